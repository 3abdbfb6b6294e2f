package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rss is a process's resident memory split as the kernel counts it in
// /proc/PID/smaps_rollup: anonymous memory (Go heap, Badger's memtables
// and caches) and file-backed pages (Badger's memory-mapped tables and
// value log), in MB. A container's memory limit and `kubectl top` see both.
type rss struct {
	total, anon, file float64
}

func (r rss) String() string {
	return fmt.Sprintf("%.0f MB (%.0f anonymous + %.0f file-backed)", r.total, r.anon, r.file)
}

func (p *caddyProc) rss() rss {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p.cmd.Process.Pid))
	if err != nil {
		return rss{}
	}
	var r rss
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Rss:":
			r.total = v / 1024
		case "Anonymous:":
			r.anon = v / 1024
		}
	}
	r.file = r.total - r.anon
	return r
}

// rssSampler records the peaks of a process's RSS and of each part.
type rssSampler struct {
	mu   sync.Mutex
	peak rss // the sample with the highest total
	anon float64
	file float64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(p *caddyProc, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			r := p.rss()
			s.mu.Lock()
			if r.total > s.peak.total {
				s.peak = r
			}
			s.anon, s.file = max(s.anon, r.anon), max(s.file, r.file)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops sampling and returns the peak sample and the peak of each part.
func (s *rssSampler) end() (peak rss, anon, file float64) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.anon, s.file
}
