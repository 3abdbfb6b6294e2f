package pgstore

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// serverCPU is the CPU time the PostgreSQL server of dsn has used so far
// (the postmaster, its live children and the children that exited), or 0
// when it cannot be found on this machine.
func serverCPU(dsn string) time.Duration {
	u, err := url.Parse(dsn)
	if err != nil {
		return 0
	}
	port := u.Port()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	type stat struct{ ppid, ticks, childTicks int64 }
	stats := map[int64]stat{}
	var master int64
	for _, p := range procs {
		pid, _ := strconv.ParseInt(filepath.Base(p), 10, 64)
		b, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		num := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
		stats[pid] = stat{ppid: num(1), ticks: num(11) + num(12), childTicks: num(13) + num(14)}
		if cmd, err := os.ReadFile(p + "/cmdline"); err == nil {
			args := strings.Split(string(cmd), "\x00")
			if strings.HasSuffix(args[0], "postgres") {
				for i, a := range args {
					if a == "-p" && i+1 < len(args) && args[i+1] == port {
						master = pid
					}
				}
			}
		}
	}
	if master == 0 {
		return 0
	}
	m := stats[master]
	ticks := m.ticks + m.childTicks
	for _, st := range stats {
		if st.ppid == master {
			ticks += st.ticks
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100
}
