package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// RunEvents checks the event log, replay, recovery by status and the
// failing-report marks. Run runs it; it is apart so a store under
// construction can run it alone.
func RunEvents(t *testing.T, open func(t *testing.T) outbox.Store) {
	t.Run("EventLogPaging", func(t *testing.T) { suiteEventLogPaging(t, open(t)) })
	t.Run("EventLogFilters", func(t *testing.T) { suiteEventLogFilters(t, open(t)) })
	t.Run("EventLogScanBound", func(t *testing.T) { suiteEventLogScanBound(t, open(t)) })
	t.Run("EventDetail", func(t *testing.T) { suiteEventDetail(t, open(t)) })
	t.Run("Replay", func(t *testing.T) { suiteReplay(t, open(t)) })
	t.Run("ReplayConcurrent", func(t *testing.T) { suiteReplayConcurrent(t, open(t)) })
	t.Run("ReplayWindowTooLarge", func(t *testing.T) { suiteReplayTooLarge(t, open(t)) })
	t.Run("FinishedSince", func(t *testing.T) { suiteFinishedSince(t, open(t)) })
	t.Run("FailingReported", func(t *testing.T) { suiteFailingReported(t, open(t)) })
}

// commitEvents commits n events of app, alternating job_created and
// job_finished, one transaction each so they are received in order.
func commitEvents(t *testing.T, s outbox.Store, app string, n int, hooks ...*outbox.Webhook) []*outbox.Ingest {
	t.Helper()
	var ins []*outbox.Ingest
	for i := range n {
		typ := []string{"job_created", "job_finished"}[i%2]
		in := NewIngest(app, typ, EventBody(app, typ, i), "", hooks...)
		if err := s.Commit(context.Background(), []*outbox.Ingest{in}); err != nil {
			t.Fatalf("commit: %v", err)
		}
		ins = append(ins, in)
	}
	return ins
}

// listAll pages through the log with f and returns the event ids in order.
func listAll(t *testing.T, s outbox.Store, app string, f outbox.EventFilter) []string {
	t.Helper()
	var ids []string
	for range 1000 {
		page, err := s.Events(context.Background(), app, f)
		if err != nil {
			t.Fatalf("listing events: %v", err)
		}
		for _, e := range page.Events {
			ids = append(ids, e.Event.ID)
		}
		if page.Next == "" {
			return ids
		}
		f.Cursor = page.Next
	}
	t.Fatal("the event log never ended")
	return nil
}

func newestFirst(ins []*outbox.Ingest) []string {
	var ids []string
	for i := len(ins) - 1; i >= 0; i-- {
		ids = append(ids, ins[i].Event.ID)
	}
	return ids
}

func suiteEventLogPaging(t *testing.T, s outbox.Store) {
	w := CreateWebhook(t, s, "a")
	ins := commitEvents(t, s, "a", 7, w)
	commitEvents(t, s, "b", 3)

	page, err := s.Events(context.Background(), "a", outbox.EventFilter{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 3 || page.Next != page.Events[2].Event.ID || page.Partial {
		t.Fatalf("first page: %d events, next %q, partial %v; want 3, the third's id, false", len(page.Events), page.Next, page.Partial)
	}
	first := page.Events[0]
	last := ins[len(ins)-1]
	if first.Event.ID != last.Event.ID || !bytes.Equal(first.Event.Body, last.Event.Body) ||
		first.Event.Type != last.Event.Type || first.Deliveries != 1 || !near(first.Event.ReceivedAt, last.Event.ReceivedAt) {
		t.Fatalf("newest event listed as %+v (%d deliveries), want %+v with 1", first.Event, first.Deliveries, last.Event)
	}
	if got, want := listAll(t, s, "a", outbox.EventFilter{Limit: 3}), newestFirst(ins); !slices.Equal(got, want) {
		t.Fatalf("paging app a: %v, want %v", got, want)
	}
	if got := listAll(t, s, "a", outbox.EventFilter{Limit: 7}); len(got) != 7 {
		t.Fatalf("one full page: %d events", len(got))
	}
	if got := listAll(t, s, "b", outbox.EventFilter{Limit: 100}); len(got) != 3 {
		t.Fatalf("app b: %d events, want 3", len(got))
	}
	if got := listAll(t, s, "c", outbox.EventFilter{Limit: 100}); len(got) != 0 {
		t.Fatalf("an app with no events: %v", got)
	}
}

func suiteEventLogFilters(t *testing.T, s outbox.Store) {
	ins := commitEvents(t, s, "a", 10)
	var finished []*outbox.Ingest
	for _, in := range ins {
		if in.Event.Type == "job_finished" {
			finished = append(finished, in)
		}
	}
	if got, want := listAll(t, s, "a", outbox.EventFilter{Type: "job_finished", Limit: 2}), newestFirst(finished); !slices.Equal(got, want) {
		t.Fatalf("by type: %v, want %v", got, want)
	}
	since, until := ins[3].Event.ReceivedAt, ins[6].Event.ReceivedAt
	if got, want := listAll(t, s, "a", outbox.EventFilter{Since: since, Until: until, Limit: 2}), newestFirst(ins[3:7]); !slices.Equal(got, want) {
		t.Fatalf("received in [4th, 7th]: %v, want %v", got, want)
	}
	if got, want := listAll(t, s, "a", outbox.EventFilter{Since: since, Limit: 100}), newestFirst(ins[3:]); !slices.Equal(got, want) {
		t.Fatalf("since the 4th: %v, want %v", got, want)
	}
	if got, want := listAll(t, s, "a", outbox.EventFilter{Until: until, Type: "job_created", Limit: 100}), newestFirst([]*outbox.Ingest{ins[0], ins[2], ins[4], ins[6]}); !slices.Equal(got, want) {
		t.Fatalf("job_created until the 7th: %v, want %v", got, want)
	}
	if got := listAll(t, s, "a", outbox.EventFilter{Since: time.Now().Add(time.Hour), Limit: 100}); len(got) != 0 {
		t.Fatalf("since the future: %v", got)
	}
	match := func(ev *outbox.Event) bool {
		return bytes.Contains(ev.Body, []byte(`"n":5}`)) || bytes.Contains(ev.Body, []byte(`"n":8}`))
	}
	if got, want := listAll(t, s, "a", outbox.EventFilter{Match: match, MaxScan: 100, Limit: 1}), []string{ins[8].Event.ID, ins[5].Event.ID}; !slices.Equal(got, want) {
		t.Fatalf("matched: %v, want %v", got, want)
	}
}

// suiteEventLogScanBound checks that a filter stops after MaxScan events
// with a cursor to go on from, and that going on finds every match.
func suiteEventLogScanBound(t *testing.T, s outbox.Store) {
	ins := commitEvents(t, s, "a", 9)
	match := func(ev *outbox.Event) bool { return bytes.Contains(ev.Body, []byte(`"n":1}`)) }
	f := outbox.EventFilter{Match: match, MaxScan: 3, Limit: 5}
	page, err := s.Events(context.Background(), "a", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 0 || !page.Partial || page.Next != ins[6].Event.ID {
		t.Fatalf("first bounded page: %d events, partial %v, next %q; want 0, true, the 3rd newest (%s)", len(page.Events), page.Partial, page.Next, ins[6].Event.ID)
	}
	var pages, partial int
	var found []string
	for {
		page, err := s.Events(context.Background(), "a", f)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if page.Partial {
			partial++
		}
		for _, e := range page.Events {
			found = append(found, e.Event.ID)
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	if !slices.Equal(found, []string{ins[1].Event.ID}) || pages != 3 || partial != 2 {
		t.Fatalf("bounded paging found %v in %d pages (%d partial), want [%s] in 3 (2 partial)", found, pages, partial, ins[1].Event.ID)
	}
}

func suiteEventDetail(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w1 := CreateWebhook(t, s, "a")
	w2 := CreateWebhook(t, s, "a", "job_finished")
	w2.Enabled = false
	if _, err := s.UpdateWebhook(ctx, "a", w2.ID, func(w *outbox.Webhook) error { w.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	in := CommitOne(t, s, "a", "job_finished", w1, w2)
	ev, ds, err := s.Event(ctx, "a", in.Event.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != in.Event.ID || !bytes.Equal(ev.Body, in.Event.Body) || ev.Type != "job_finished" {
		t.Fatalf("event read back as %+v", ev)
	}
	got := map[string]outbox.Status{}
	for _, d := range ds {
		if d.EventID != in.Event.ID {
			t.Fatalf("delivery %s of event %s listed", d.ID, d.EventID)
		}
		got[d.WebhookID] = d.Status
	}
	if len(ds) != 2 || got[w1.ID] != outbox.StatusPending || got[w2.ID] != outbox.StatusSkipped {
		t.Fatalf("deliveries %v, want %s pending and %s skipped", got, w1.ID, w2.ID)
	}
	page, _ := s.Events(ctx, "a", outbox.EventFilter{Limit: 1})
	if len(page.Events) != 1 || page.Events[0].Deliveries != 2 {
		t.Fatalf("listed with %+v, want 2 deliveries", page.Events)
	}
	if _, _, err := s.Event(ctx, "b", in.Event.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("through another app: %v, want not found", err)
	}
	if _, _, err := s.Event(ctx, "a", newID()); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("unknown event: %v, want not found", err)
	}
	for _, j := range Claim(t, s, time.Now(), 10) {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
}

// replayRequest is what the outbox asks of the store to replay a window
// to w: its types, and new deliveries as the outbox makes them.
func replayRequest(w *outbox.Webhook, since, until time.Time, max int) *outbox.ReplayRequest {
	return &outbox.ReplayRequest{
		Since: since, Until: until, MaxEvents: max,
		Match:       func(ev *outbox.Event) bool { return w.Subscribes(ev.Type) },
		NewDelivery: func(ev *outbox.Event) *outbox.Delivery { return newDelivery(w, ev, time.Now()) },
	}
}

func suiteReplay(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	old := CreateWebhook(t, s, "a")
	start := time.Now().Add(-time.Second)
	ins := commitEvents(t, s, "a", 6, old)
	commitEvents(t, s, "b", 2)
	for _, j := range Claim(t, s, time.Now(), 100) {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
	late := CreateWebhook(t, s, "a", "job_finished")
	n, err := s.Replay(ctx, "a", late.ID, replayRequest(late, start, time.Now(), 100))
	if err != nil || n != 3 {
		t.Fatalf("replay: %d, %v; want the 3 job_finished events", n, err)
	}
	jobs := Claim(t, s, time.Now(), 100)
	var got, want []string
	for _, j := range jobs {
		if j.Delivery.WebhookID != late.ID || j.Event == nil || j.Event.Type != "job_finished" {
			t.Fatalf("replay queued %+v", j.Delivery)
		}
		got = append(got, j.Event.ID)
	}
	for _, in := range ins {
		if in.Event.Type == "job_finished" {
			want = append(want, in.Event.ID)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("replayed events %v, want %v", got, want)
	}
	for _, j := range jobs {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
	if n, err := s.Replay(ctx, "a", late.ID, replayRequest(late, start, time.Now(), 100)); err != nil || n != 0 {
		t.Fatalf("second replay: %d, %v; want 0", n, err)
	}
	if n, err := s.Replay(ctx, "a", old.ID, replayRequest(old, start, time.Now(), 100)); err != nil || n != 0 {
		t.Fatalf("replay to the webhook that had every event: %d, %v; want 0", n, err)
	}
	_, ds, err := s.Event(ctx, "a", want[0])
	if err != nil || len(ds) != 2 {
		t.Fatalf("a replayed event has %d deliveries (%v), want 2", len(ds), err)
	}
	// Part of the window only.
	other := CreateWebhook(t, s, "a", "job_created")
	if n, err := s.Replay(ctx, "a", other.ID, replayRequest(other, ins[2].Event.ReceivedAt, ins[4].Event.ReceivedAt, 100)); err != nil || n != 2 {
		t.Fatalf("replay of the 3rd to 5th: %d, %v; want 2 job_created", n, err)
	}
	if _, err := s.Replay(ctx, "b", late.ID, replayRequest(late, start, time.Now(), 100)); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("through another app: %v, want not found", err)
	}
	for _, j := range Claim(t, s, time.Now(), 100) {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
}

func suiteReplayConcurrent(t *testing.T, s outbox.Store) {
	start := time.Now().Add(-time.Second)
	commitEvents(t, s, "a", 40)
	w := CreateWebhook(t, s, "a")
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = s.Replay(context.Background(), "a", w.ID, replayRequest(w, start, time.Now(), 100))
		}()
	}
	wg.Wait()
	total := 0
	for i, n := range counts {
		if errs[i] != nil {
			t.Fatalf("replay %d: %v", i, errs[i])
		}
		total += n
	}
	jobs := Claim(t, s, time.Now(), 200)
	if total != 40 || len(jobs) != 40 {
		t.Fatalf("four concurrent replays made %v deliveries (%d queued), want 40 in all", counts, len(jobs))
	}
	for _, j := range jobs {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
}

func suiteReplayTooLarge(t *testing.T, s outbox.Store) {
	start := time.Now().Add(-time.Second)
	commitEvents(t, s, "a", 5)
	w := CreateWebhook(t, s, "a")
	if n, err := s.Replay(context.Background(), "a", w.ID, replayRequest(w, start, time.Now(), 4)); !errors.Is(err, outbox.ErrWindowTooLarge) || n != 0 {
		t.Fatalf("replay of 5 events with a bound of 4: %d, %v; want ErrWindowTooLarge", n, err)
	}
	if jobs := Claim(t, s, time.Now(), 10); len(jobs) != 0 {
		t.Fatalf("a refused replay queued %d deliveries", len(jobs))
	}
	if n, err := s.Replay(context.Background(), "a", w.ID, replayRequest(w, start, time.Now(), 5)); err != nil || n != 5 {
		t.Fatalf("replay of 5 events with a bound of 5: %d, %v", n, err)
	}
	for _, j := range Claim(t, s, time.Now(), 10) {
		Finish(t, s, j, outbox.StatusSucceeded, 200)
	}
}

func suiteFinishedSince(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	w := CreateWebhook(t, s, "a")
	live := CommitOne(t, s, "a", "job_created", w)
	if _, err := s.UpdateWebhook(ctx, "a", w.ID, func(x *outbox.Webhook) error { x.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	w.Enabled = false
	skipped := CommitOne(t, s, "a", "job_created", w)
	for _, j := range Claim(t, s, time.Now(), 10) {
		Finish(t, s, j, outbox.StatusFailed, 500)
	}
	failed, skip := live.Deliveries[0].ID, skipped.Deliveries[0].ID
	for _, c := range []struct {
		statuses []outbox.Status
		want     []string
	}{
		{[]outbox.Status{outbox.StatusFailed}, []string{failed}},
		{[]outbox.Status{outbox.StatusSkipped}, []string{skip}},
		{[]outbox.Status{outbox.StatusFailed, outbox.StatusSkipped}, []string{failed, skip}},
		{[]outbox.Status{outbox.StatusSucceeded}, nil},
	} {
		got, err := s.FinishedSince(ctx, "a", w.ID, before, c.statuses)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("finished since, %v: %v %v, want %v", c.statuses, got, err, c.want)
		}
	}
	if got, _ := s.FinishedSince(ctx, "a", w.ID, time.Now().Add(time.Hour), []outbox.Status{outbox.StatusSkipped}); len(got) != 0 {
		t.Errorf("skipped since the future: %v", got)
	}
	if _, err := s.FinishedSince(ctx, "b", w.ID, before, []outbox.Status{outbox.StatusSkipped}); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("through another app: %v", err)
	}
}

func suiteFailingReported(t *testing.T, s outbox.Store) {
	ctx := context.Background()
	w := CreateWebhook(t, s, "a")
	t1 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Microsecond)
	t2 := t1.Add(time.Hour)
	step := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %v, %v; want %v", what, got, err, want)
		}
	}
	if since, err := s.ClearFailingReported(ctx, w.ID); err != nil || !since.IsZero() {
		t.Fatalf("clearing what was never reported: %v, %v", since, err)
	}
	first, err := s.MarkFailingReported(ctx, w.ID, t1)
	step("first mark", first, err, true)
	first, err = s.MarkFailingReported(ctx, w.ID, t1)
	step("the same period again", first, err, false)
	first, err = s.MarkFailingReported(ctx, w.ID, t2)
	step("a new period", first, err, true)
	since, err := s.ClearFailingReported(ctx, w.ID)
	if err != nil || !since.Equal(t2) {
		t.Fatalf("clear: %v, %v; want %v", since, err, t2)
	}
	if since, err := s.ClearFailingReported(ctx, w.ID); err != nil || !since.IsZero() {
		t.Fatalf("second clear: %v, %v; want zero", since, err)
	}
	first, err = s.MarkFailingReported(ctx, w.ID, t2)
	step("the period after a clear", first, err, true)

	// Of racing sidecars, one marks.
	other := CreateWebhook(t, s, "a")
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.MarkFailingReported(ctx, other.ID, t1)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firsts != 1 {
		t.Fatalf("8 concurrent marks of one period: %d said first, want 1", firsts)
	}
}
