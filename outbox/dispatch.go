package outbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/signature"
)

// MaxResponseBody is how much of an endpoint's answer the history keeps.
const MaxResponseBody = 64 << 10

// throttleFloor is the least wait after an answer that asks the sender to
// slow down (429, 502, 503, 504) or a timeout, as Standard Webhooks advises.
const throttleFloor = 60 * time.Second

// maxRetryAfter bounds how far an endpoint's Retry-After can push a retry.
const maxRetryAfter = 24 * time.Hour

type dispatcher struct {
	o      *Outbox
	client *http.Client

	jobs     chan *Job
	free     chan struct{}
	stopping atomic.Bool

	egress  atomic.Pointer[egress]
	limiter RateLimiter

	// lease is how long the store holds a claim (zero: for as long as
	// this process lives).
	lease time.Duration

	mu       sync.Mutex
	busy     map[string]int // claimed jobs per webhook, parked ones too
	sending  map[string]int // HTTP exchanges per webhook
	parked   map[string][]*Job
	handoffs sync.WaitGroup // parked jobs started as a slot freed
	inflight int
	workers  int
	perHook  int
	// caps are the claim admissions of webhooks whose own maxInFlight,
	// timeout or rate limit make them differ from the app's, and
	// notBefore the next rate-limit slot of rate-limited ones, as the last
	// claim of each found them.
	caps      map[string]int
	notBefore map[string]time.Time
}

// claimAhead is how many deliveries beyond its maxInFlight a webhook may
// have claimed, as a multiple of it: they wait, parked, and start the
// moment one of its attempts ends, so a busy webhook's next request does
// not wait for a claim (a round trip to PostgreSQL, an iterator over
// Badger's tables). Each waits at most one attempt.
const claimAhead = 1

// leaseMargin is what a claim ahead leaves of the lease beside the two
// attempts it may wait for and make.
const leaseMargin = 5 * time.Second

func newDispatcher(o *Outbox) *dispatcher {
	d := &dispatcher{
		o:         o,
		free:      make(chan struct{}, 1),
		busy:      map[string]int{},
		sending:   map[string]int{},
		parked:    map[string][]*Job{},
		caps:      map[string]int{},
		notBefore: map[string]time.Time{},
	}
	if l, ok := o.store.(Leaser); ok {
		d.lease = l.Lease()
	}
	if rl, ok := o.store.(RateLimiter); ok {
		d.limiter = rl
	} else {
		d.limiter = &memoryRateLimiter{}
	}
	guarded := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   dialControl(o.options),
	}
	plain := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	d.client = &http.Client{
		Transport: &http.Transport{
			// Only the proxy send chooses: the environment's proxy would
			// take deliveries past the destination check.
			Proxy:                 proxyFromContext,
			DialContext:           dialVia(guarded.DialContext, plain.DialContext),
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		// A redirect is a failure: the endpoint must answer itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	d.configure(o.options())
	return d
}

func (d *dispatcher) configure(opts *Options) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.perHook = opts.MaxInFlightPerWebhook
	d.egress.Store(newEgress(opts))
	if d.workers == 0 {
		// The pool is sized once; a reload with another size takes
		// effect at the next start.
		d.workers = opts.Workers
	}
}

// claimRequest snapshots what is in flight. Only the run loop claims and
// workers only ever lower the counts, so the snapshot never admits more
// than the caps allow.
func (d *dispatcher) claimRequest(now time.Time, limit int) *ClaimRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &ClaimRequest{Now: now, Limit: limit, InFlight: maps.Clone(d.busy), MaxInFlight: d.admission(nil),
		MaxInFlightOf: maps.Clone(d.caps), NotBefore: maps.Clone(d.notBefore)}
}

// sendCap is how many attempts to w may be in flight at once.
func (d *dispatcher) sendCap(w *Webhook) int {
	if w != nil && w.MaxInFlight > 0 {
		return w.MaxInFlight
	}
	return d.perHook
}

// admission is how many deliveries of w (nil: a webhook with the app's
// settings) a claim may hold: its sendCap, and as many again claimed
// ahead unless it is rate limited (a slot admits one) or a delivery
// waiting for a slot might outlive the store's lease. d.mu must be held.
func (d *dispatcher) admission(w *Webhook) int {
	n := d.sendCap(w)
	timeout := d.o.options().Timeout
	if w != nil {
		if w.RateLimit > 0 {
			return n
		}
		if w.Timeout > 0 {
			timeout = w.Timeout
		}
	}
	if d.lease > 0 && 2*timeout+leaseMargin > d.lease {
		return n
	}
	return n * (1 + claimAhead)
}

// claimed counts the jobs a claim returned as in flight, and learns each
// webhook's own cap and rate limit from it. A claim is admitted by what
// the last claim knew, so a webhook's first claim (or one after its cap
// was lowered) can bring more than its cap: those come back as overflow,
// for the caller to release unattempted.
func (d *dispatcher) claimed(jobs []*Job) (run, overflow []*Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	appLimit := d.admission(nil)
	for _, j := range jobs {
		id := j.Delivery.WebhookID
		limit := appLimit
		if w := j.Webhook; w != nil {
			if n := d.admission(w); n != limit {
				d.caps[id], limit = n, n
			} else {
				delete(d.caps, id)
			}
			if _, ok := d.notBefore[id]; ok != (w.RateLimit > 0) {
				if ok {
					delete(d.notBefore, id)
				} else {
					d.notBefore[id] = time.Time{}
				}
			}
		}
		if d.busy[id] >= limit && !j.Gone {
			overflow = append(overflow, j)
			continue
		}
		d.busy[id]++
		d.inflight++
		run = append(run, j)
	}
	return run, overflow
}

// holdOff keeps a rate-limited webhook out of claims until its next slot.
func (d *dispatcher) holdOff(webhookID string, until time.Time) {
	d.mu.Lock()
	d.notBefore[webhookID] = until
	d.mu.Unlock()
}

// nextSlot returns the first rate-limit slot still to come, zero if none,
// and forgets the webhooks whose slot is long past.
func (d *dispatcher) nextSlot(now time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var next time.Time
	for id, t := range d.notBefore {
		switch {
		case t.After(now):
			if next.IsZero() || t.Before(next) {
				next = t
			}
		case !t.IsZero() && now.Sub(t) > time.Minute && d.busy[id] == 0:
			// Idle for a while: its next claim learns it again.
			delete(d.notBefore, id)
		}
	}
	return next
}

// startSending takes one of the job's webhook's maxInFlight slots, or
// parks the job until endAttempt frees one and starts it.
func (d *dispatcher) startSending(j *Job) bool {
	id := j.Delivery.WebhookID
	d.mu.Lock()
	defer d.mu.Unlock()
	if !j.Gone && d.sending[id] >= d.sendCap(j.Webhook) {
		d.parked[id] = append(d.parked[id], j)
		return false
	}
	d.sending[id]++
	return true
}

// endAttempt gives back one of the webhook's maxInFlight slots, and
// starts a job parked for it.
func (d *dispatcher) endAttempt(webhookID string) {
	d.mu.Lock()
	decrement(d.busy, webhookID)
	decrement(d.sending, webhookID)
	if q := d.parked[webhookID]; len(q) > 0 && !d.stopping.Load() && d.sending[webhookID] < d.sendCap(q[0].Webhook) {
		j := q[0]
		if d.parked[webhookID] = q[1:]; len(q) == 1 {
			delete(d.parked, webhookID)
		}
		d.sending[webhookID]++
		d.handoffs.Add(1)
		go func() {
			defer d.handoffs.Done()
			if d.refresh(j) {
				d.attempt(j)
			} else {
				_ = d.o.store.Release(context.Background(), j)
				d.endAttempt(webhookID)
			}
			d.endJob()
		}()
	}
	d.mu.Unlock()
	d.signalFree()
}

// refresh gives a parked job its webhook as it is now, since it was read
// up to one attempt ago: an edit, a disable or a delete meanwhile applies
// to it as to a delivery claimed now. It reports false when the store
// cannot tell, and the job goes back to the queue.
func (d *dispatcher) refresh(j *Job) bool {
	w := j.Webhook
	cur, ok := (*Webhook)(nil), false
	if c, is := d.o.store.(WebhookCache); is {
		cur, ok = c.CachedWebhook(w.AppID, w.ID)
	}
	if !ok {
		var err error
		cur, err = d.o.store.GetWebhook(context.Background(), w.AppID, w.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			cur = nil
		case err != nil:
			return false
		}
	}
	if cur == nil {
		// Deleted: recorded as skipped, which the store turns into
		// dropping the delivery with the webhook's history.
		cur = w.Clone()
		cur.Enabled, j.Delivery.Resend = false, false
	}
	j.Webhook = cur
	return true
}

// releaseParked gives the jobs still parked back to the store, once the
// workers have stopped.
func (d *dispatcher) releaseParked() {
	d.mu.Lock()
	parked := d.parked
	d.parked = map[string][]*Job{}
	d.mu.Unlock()
	for id, q := range parked {
		for _, j := range q {
			_ = d.o.store.Release(context.Background(), j)
			d.mu.Lock()
			decrement(d.busy, id)
			d.mu.Unlock()
			d.endJob()
		}
	}
}

// decrement lowers a webhook's count, forgetting it at zero.
func decrement(counts map[string]int, webhookID string) {
	if counts[webhookID]--; counts[webhookID] <= 0 {
		delete(counts, webhookID)
	}
}

// endJob gives back the worker's place once the job is saved.
func (d *dispatcher) endJob() {
	d.mu.Lock()
	d.inflight--
	d.mu.Unlock()
	d.signalFree()
}

func (d *dispatcher) signalFree() {
	select {
	case d.free <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run(ctx context.Context) {
	log := d.o.options().Logger
	d.mu.Lock()
	n := d.workers
	d.mu.Unlock()
	// Claimed jobs wait here; twice the pool keeps workers busy between scans.
	room := 2 * n
	d.jobs = make(chan *Job, room)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range d.jobs {
				if !d.startSending(j) {
					continue // parked: endAttempt starts it
				}
				if d.stopping.Load() {
					_ = d.o.store.Release(context.Background(), j)
					d.endAttempt(j.Delivery.WebhookID)
				} else {
					d.attempt(j)
				}
				d.endJob()
			}
		}()
	}
	defer func() {
		d.stopping.Store(true)
		close(d.jobs)
		wg.Wait()
		d.handoffs.Wait()
		d.releaseParked()
	}()

	// A fleet's store tells of work that other sidecars queued.
	var notified <-chan struct{}
	if n, ok := d.o.store.(Notifier); ok {
		notified = n.Notifications()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		d.mu.Lock()
		free := room - d.inflight
		d.mu.Unlock()
		wait := time.Hour
		if free > 0 {
			now := time.Now()
			jobs, next, err := d.o.store.Claim(ctx, d.claimRequest(now, free))
			if err != nil {
				log.Error("claiming due deliveries", zap.Error(err))
				wait = time.Second
			}
			run, overflow := d.claimed(jobs)
			for _, j := range overflow {
				if err := d.o.store.Release(context.Background(), j); err != nil {
					log.Error("releasing a delivery over its webhook's max_in_flight", zap.Error(err))
				}
			}
			for _, j := range run {
				d.jobs <- j
			}
			if err == nil && len(jobs) == free && len(overflow) == 0 {
				continue
			}
			if slot := d.nextSlot(now); !slot.IsZero() && (next.IsZero() || slot.Before(next)) {
				next = slot
			}
			if !next.IsZero() {
				wait = max(time.Until(next), 0)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.o.wake:
		case <-notified:
		case <-d.free:
		case <-timer.C:
		}
	}
}

// attempt sends one delivery and records what happened. The webhook's
// slot is given back once the HTTP exchange ends, before the result is
// saved: maxInFlight bounds the requests an endpoint sees, and the store
// keeps the delivery claimed until the save, so no second attempt of it
// starts meanwhile. A turn of a busy webhook then costs one request, not a
// request and a commit (a round trip to PostgreSQL).
func (d *dispatcher) attempt(j *Job) {
	opts := d.o.options()
	dl, w := j.Delivery, j.Webhook
	ended := false
	endAttempt := func() {
		if !ended {
			ended = true
			d.endAttempt(dl.WebhookID)
		}
	}
	defer endAttempt()
	if j.Gone {
		_ = d.o.store.Release(context.Background(), j)
		return
	}
	log := opts.Logger.WithLazy(zap.String("webhook_id", w.ID), zap.String("event_id", dl.EventID), zap.String("delivery_id", dl.ID))
	now := time.Now()
	if j.Event != nil && !j.EventExpires.IsZero() && !now.Before(j.EventExpires) {
		// Expired since the claim read it (a job claimed ahead waits):
		// what the history no longer holds is not sent.
		j.Event = nil
	}
	switch {
	case j.Event == nil:
		dl.Attempts = append(dl.Attempts, Attempt{SentAt: now.UTC(), Error: "the event is no longer retained"})
		d.finishDelivery(j, StatusFailed, log)
		return
	case !w.Enabled && !dl.Resend:
		dl.Status, dl.NextAttemptAt = StatusSkipped, nil
		d.save(j, log)
		return
	}
	if w.RateLimit > 0 && !d.takeSlot(j, log) {
		return
	}

	timeout, schedule := opts.Timeout, opts.RetrySchedule
	if w.Timeout > 0 {
		timeout = w.Timeout
	}
	if w.RetrySchedule != nil {
		schedule = w.RetrySchedule
	}
	now = time.Now()
	a, resp := d.send(w, j.Event, now, timeout)
	endAttempt()
	dl.Attempts = append(dl.Attempts, a)
	dl.Round++
	success := a.ResponseStatusCode >= 200 && a.ResponseStatusCode < 300 && a.Error == ""
	opts.Observer.AttemptFinished(dl.Event, success, time.Duration(a.DurationMs)*time.Millisecond)
	log.Debug("delivery attempt",
		zap.Int("attempt", len(dl.Attempts)),
		zap.Int("status", a.ResponseStatusCode),
		zap.Int64("duration_ms", a.DurationMs),
		zap.String("error", a.Error))

	if success {
		dl.Status, dl.NextAttemptAt = StatusSucceeded, nil
		d.save(j, log)
		if !w.FailingSince.IsZero() {
			d.markHealthy(w, log)
		}
		return
	}

	var blocked *BlockedError
	switch {
	case a.ResponseStatusCode == http.StatusGone && !isOperational(w):
		d.disable(w, "gone", log)
		d.finishDelivery(j, StatusFailed, log)
		return
	case resp.blocked || errors.As(resp.err, &blocked):
		d.finishDelivery(j, StatusFailed, log)
		return
	}
	if !isOperational(w) && d.markFailing(w, now, opts.DisableAfter, log) {
		d.finishDelivery(j, StatusFailed, log)
		return
	}
	if dl.Resend || dl.Round > len(schedule) {
		d.finishDelivery(j, StatusFailed, log)
		return
	}
	wait := jitter(schedule[dl.Round-1])
	if resp.throttled {
		wait = max(wait, throttleFloor)
	}
	if resp.retryAfter > wait {
		wait = min(resp.retryAfter, maxRetryAfter)
	}
	next := now.Add(wait)
	dl.NextAttemptAt = &next
	d.save(j, log)
}

// takeSlot takes the webhook's next rate-limit slot for the job. When the
// slot has not come, the job goes back unattempted (waiting is neither an
// attempt nor a failure) and the webhook is held back until the slot.
func (d *dispatcher) takeSlot(j *Job, log *zap.Logger) bool {
	w := j.Webhook
	wait, err := d.limiter.TakeSlot(context.Background(), w.ID, w.RateLimit)
	if err != nil {
		log.Error("taking a rate limit slot", zap.Error(err))
		wait = time.Second
	}
	if wait <= 0 {
		d.holdOff(w.ID, time.Now().Add(SlotInterval(w.RateLimit)))
		return true
	}
	d.holdOff(w.ID, time.Now().Add(wait))
	if err := d.o.store.Release(context.Background(), j); err != nil {
		log.Error("releasing a rate-limited delivery", zap.Error(err))
	}
	return false
}

func (d *dispatcher) finishDelivery(j *Job, s Status, log *zap.Logger) {
	dl := j.Delivery
	dl.Status, dl.NextAttemptAt = s, nil
	if !d.save(j, log) {
		// Not final: the delivery is attempted again, here or by the
		// sidecar that took it over, and its end is reported there.
		return
	}
	if s == StatusFailed {
		d.o.options().Observer.DeliveryFailed(dl.Event)
		last := dl.LastAttempt()
		fields := []zap.Field{zap.Int("attempts", len(dl.Attempts))}
		if last != nil {
			fields = append(fields, zap.Int("status", last.ResponseStatusCode), zap.String("error", last.Error))
		}
		log.Warn("delivery failed", fields...)
		// A failure that disabled its webhook is reported as that.
		if j.Webhook.Enabled {
			d.o.reportExhausted(j)
		}
	}
}

// save records the attempt and reports whether it was recorded.
func (d *dispatcher) save(j *Job, log *zap.Logger) bool {
	err := d.o.store.Save(context.Background(), j)
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			// Not a store failure: the delivery is another sidecar's now,
			// so there is nothing to release and no reason to pause.
			log.Warn("late save refused: the lease ran out and another sidecar took the delivery over; this attempt's result is dropped",
				zap.Int("attempt", len(j.Delivery.Attempts)))
			return false
		}
		// The claim ends either way; the delivery keeps its old queue
		// entry and is attempted again, so nothing is lost. The pause
		// keeps a failing store from turning into a loop of resends.
		log.Error("saving delivery", zap.Error(err))
		time.Sleep(time.Second)
		_ = d.o.store.Release(context.Background(), j)
	}
	return err == nil
}

var errUnchanged = errors.New("unchanged")

// updateWebhook applies a state change and reports whether this call made
// it: the store applies updates one at a time, so of several sidecars
// racing to make one change, one does.
func (d *dispatcher) updateWebhook(w *Webhook, fn func(*Webhook) error, log *zap.Logger) bool {
	_, err := d.o.store.UpdateWebhook(context.Background(), w.AppID, w.ID, fn)
	if err != nil && !errors.Is(err, errUnchanged) && !errors.Is(err, ErrNotFound) {
		log.Error("updating webhook state", zap.Error(err))
	}
	return err == nil
}

func (d *dispatcher) disable(w *Webhook, reason string, log *zap.Logger) {
	changed := d.updateWebhook(w, func(cur *Webhook) error {
		if !cur.Enabled {
			return errUnchanged
		}
		cur.Enabled, cur.DisabledReason = false, reason
		return nil
	}, log)
	w.Enabled = false
	log.Warn("webhook disabled", zap.String("reason", reason))
	if changed {
		d.o.reportDisabled(w, reason)
	}
}

// markFailing starts or continues a webhook's run of failures and reports
// whether it has lasted long enough to disable the webhook.
func (d *dispatcher) markFailing(w *Webhook, now time.Time, after time.Duration, log *zap.Logger) bool {
	if w.FailingSince.IsZero() {
		d.updateWebhook(w, func(cur *Webhook) error {
			if !cur.FailingSince.IsZero() {
				return errUnchanged
			}
			cur.FailingSince = now
			return nil
		}, log)
		return false
	}
	d.o.reportFailing(w, now)
	if now.Sub(w.FailingSince) < after {
		return false
	}
	d.disable(w, "failing", log)
	return true
}

func (d *dispatcher) markHealthy(w *Webhook, log *zap.Logger) {
	d.updateWebhook(w, func(cur *Webhook) error {
		if cur.FailingSince.IsZero() {
			return errUnchanged
		}
		cur.FailingSince = time.Time{}
		return nil
	}, log)
	d.o.reportRecovered(w)
}

type sendResult struct {
	err        error
	blocked    bool
	throttled  bool
	retryAfter time.Duration
}

// send makes one signed POST of the event to the webhook.
func (d *dispatcher) send(w *Webhook, ev *Event, now time.Time, timeout time.Duration) (Attempt, sendResult) {
	var res sendResult
	a := Attempt{SentAt: now.UTC()}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(ev.Body))
	if err != nil {
		a.Error = "building request: the URL does not parse"
		res.err = err
		return a, res
	}
	if eg := d.egress.Load(); eg.proxyFor(req.URL) != nil {
		// The proxy resolves names; a literal address is still checked,
		// in every spelling a resolver would read as one, as at create.
		if addr, ok := hostIP(req.URL.Hostname()); ok {
			if reason := blockedReason(addr, d.o.options().AllowDestinations); reason != "" {
				blocked := &BlockedError{Addr: addr.WithZone(""), Reason: reason}
				a.Error, res.err, res.blocked = blocked.Error(), blocked, true
				return a, res
			}
		}
		req = req.WithContext(withProxy(ctx, eg))
	}
	req.Header = signedHeaders(w, ev, now)
	for name, v := range w.Headers {
		req.Header[name] = []string{v}
	}
	setTraceHeaders(req.Header, ev)
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		a.DurationMs = time.Since(start).Milliseconds()
		res.err = err
		var blocked *BlockedError
		var ue *url.Error
		switch {
		case errors.As(err, &blocked):
			res.blocked = true
			a.Error = blocked.Error()
		case errors.As(err, &ue):
			// The URL is left out: it may carry a token.
			a.Error = ue.Err.Error()
			if ue.Timeout() {
				a.Error = "timed out after " + timeout.String()
				res.throttled = true
			}
		default:
			a.Error = err.Error()
		}
		return a, res
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	a.DurationMs = time.Since(start).Milliseconds()
	a.ResponseStatusCode = resp.StatusCode
	a.ResponseBody = string(body)
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		res.throttled = true
	}
	res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return a, res
}

// signedHeaders are the wire format's headers for one attempt.
func signedHeaders(w *Webhook, ev *Event, now time.Time) http.Header {
	h := make(http.Header, 6)
	h["Content-Type"] = []string{"application/json"}
	h["User-Agent"] = []string{"caddy-webhooks"}
	h["Webhook-Id"] = []string{ev.ID}
	h["Webhook-Timestamp"] = []string{strconv.FormatInt(now.Unix(), 10)}
	if keys := w.signingKeys(now); len(keys) > 0 {
		h["X-Signature"] = []string{signature.XSignature(keys[0], ev.Body)}
		h["Webhook-Signature"] = []string{signature.StandardSignature(keys, ev.ID, now, ev.Body)}
	}
	return h
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return min(time.Duration(secs)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// jitter spreads retries by ±20% so endpoints that fail together are not
// hit together again.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
