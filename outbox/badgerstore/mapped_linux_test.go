package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/internal/wait"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// residentIn sums the resident bytes of this process's mappings of files
// in dir, as /proc/self/smaps counts them.
func residentIn(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	var n int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			i := strings.IndexByte(line, '/')
			in = i >= 0 && strings.HasPrefix(line[i:], dir+"/")
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			n += kb << 10
		}
	}
	return n
}

// commitEvents commits n events of about 2 KiB, each with a delivery to
// one webhook, and returns the webhook and the bodies by delivery id.
func commitEvents(t *testing.T, s *Store, n int) (*outbox.Webhook, map[string][]byte) {
	t.Helper()
	w := &outbox.Webhook{ID: newID(), AppID: "app", Name: "w", URL: "http://127.0.0.1/", Events: []string{"job_created"}, Enabled: true}
	if err := s.CreateWebhook(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{}
	pad := strings.Repeat("x", 2000)
	for i := 0; i < n; i += 100 {
		var batch []*outbox.Ingest
		for j := i; j < i+100 && j < n; j++ {
			body := []byte(fmt.Sprintf(`{"event":"job_created","data":{"appId":"app","n":%d,"pad":%q}}`, j, pad))
			ev := &outbox.Event{ID: newID(), AppID: "app", Type: "job_created", ReceivedAt: time.Now(), Body: body}
			d := newDelivery(w, ev, time.Now())
			batch = append(batch, &outbox.Ingest{Event: ev, Deliveries: []*outbox.Delivery{d}})
			bodies[d.ID] = body
		}
		if err := s.Commit(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	return w, bodies
}

// TestReleaseMappedDropsResidentPages: pages of the store's mapped files
// that Badger wrote leave the process's RSS when released, and every
// event reads back intact afterwards.
func TestReleaseMappedDropsResidentPages(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MappedReleaseEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, bodies := commitEvents(t, s, 10_000)

	before := residentIn(t, s.mapDir)
	if before < 8<<20 {
		t.Fatalf("only %d KiB of the store's mapped files are resident after writing 20 MB; the test cannot tell a release", before>>10)
	}
	asked, err := releaseMapped(s.mapDir)
	if err != nil {
		t.Fatalf("releasing mapped pages: %v", err)
	}
	after := residentIn(t, s.mapDir)
	t.Logf("resident in mapped store files: %d KiB before, %d KiB after releasing %d MiB of mappings", before>>10, after>>10, asked>>20)
	if after > before/4 {
		t.Errorf("after a release %d KiB of the store's mapped files are still resident, want at most a quarter of the %d KiB before", after>>10, before>>10)
	}

	for id, body := range bodies {
		_, ev, err := s.Delivery(context.Background(), "app", w.ID, id)
		if err != nil {
			t.Fatalf("reading delivery %s after the release: %v", id, err)
		}
		if !bytes.Equal(ev.Body, body) {
			t.Fatalf("event of delivery %s reads back as %q after the release, want the body committed", id, ev.Body)
		}
	}
}

// TestMappedReleaseEvery: with the option set, the store releases mapped
// pages by itself.
func TestMappedReleaseEvery(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MappedReleaseEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commitEvents(t, s, 10_000)
	wait.Until(t, "the store to release the pages of its mapped files", func() bool {
		return residentIn(t, s.mapDir) < 2<<20
	})
}
