package outbox

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// EventScanFactor bounds the work of a filtered event-log page: a page of
// limit events examines at most limit × EventScanFactor events with the
// filter, then stops early with a cursor to go on from, so an expression
// that matches nothing in a large window costs one bounded page, not the
// whole window.
const EventScanFactor = 50

// EventFilter narrows an event-log listing in the store.
type EventFilter struct {
	// Type keeps events of this type only; "" keeps all.
	Type string
	// Since and Until bound ReceivedAt, both included; zero is unbounded.
	Since, Until time.Time
	// Match, when set, keeps the events it accepts; the store counts the
	// events it offers to Match against MaxScan.
	Match   func(*Event) bool
	MaxScan int
	Limit   int
	// Cursor is the id the previous page ended at: the page starts after it.
	Cursor string
}

// EventEntry is an event of the log with how many deliveries it has.
type EventEntry struct {
	Event      *Event
	Deliveries int
}

// EventPage is one page of the event log.
type EventPage struct {
	Events []*EventEntry
	// Next is the cursor of the next page; "" when nothing older is left.
	Next string
	// Partial says the page stopped at its scan bound before Limit events
	// matched: Next goes on from the last event examined.
	Partial bool
}

// EventQuery is an event-log request.
type EventQuery struct {
	Type         string
	Since, Until time.Time
	// Filter is a CEL expression over event (string) and data (the event's
	// data object) of type bool.
	Filter string
	Limit  int
	Cursor string
}

// IDTimePrefix is the start of the string form of every UUIDv7 id created
// in the millisecond ms. Ids sort as their creation times, so stores use
// it to turn a time window into a key range.
func IDTimePrefix(ms int64) string {
	ms = max(ms, 0)
	return fmt.Sprintf("%08x-%04x", uint64(ms)>>16&0xffffffff, ms&0xffff)
}

// EventIDRange returns id bounds for events received in [since, until]
// (zero: unbounded): every such id is >= lower and < upper ("" when
// unbounded). An event's id is made just after its ReceivedAt is read, so
// its millisecond is that of ReceivedAt or the next; stores still check
// ReceivedAt itself.
func EventIDRange(since, until time.Time) (lower, upper string) {
	if !since.IsZero() {
		lower = IDTimePrefix(since.UnixMilli())
	}
	if !until.IsZero() {
		upper = IDTimePrefix(until.UnixMilli() + 2)
	}
	return lower, upper
}

// InWindow reports whether t lies in [since, until], zero bounds open.
func InWindow(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || !t.After(until))
}

// ListEvents returns a page of an app's retained events, newest first.
func (o *Outbox) ListEvents(ctx context.Context, appID string, q EventQuery) (EventPage, error) {
	if err := CheckAppID(appID); err != nil {
		return EventPage{}, err
	}
	if q.Type != "" && !slices.Contains(o.options().Events, q.Type) {
		return EventPage{}, invalid("event", "%q is not in the catalog (%s)", q.Type, strings.Join(o.options().Events, ", "))
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return EventPage{}, invalid("until", "is before since")
	}
	if q.Limit <= 0 {
		q.Limit = 20
	}
	if q.Limit > MaxPageSize {
		return EventPage{}, invalid("limit", "must be at most %d", MaxPageSize)
	}
	f := EventFilter{Type: q.Type, Since: q.Since, Until: q.Until, Limit: q.Limit, Cursor: q.Cursor}
	if q.Filter != "" {
		m, err := o.eventMatcher(q.Filter)
		if err != nil {
			return EventPage{}, err
		}
		f.Match, f.MaxScan = m, q.Limit*EventScanFactor
	}
	return o.store.Events(ctx, appID, f)
}

// GetEvent returns one retained event of the app and its deliveries.
func (o *Outbox) GetEvent(ctx context.Context, appID, id string) (*Event, []*Delivery, error) {
	if err := CheckAppID(appID); err != nil {
		return nil, nil, err
	}
	return o.store.Event(ctx, appID, id)
}

// eventMatcher compiles a filter, in the language and within the limits
// of webhook filters, into a predicate on events. An event whose data does
// not decode, or on which the expression fails (a missing field), does not
// match.
func (o *Outbox) eventMatcher(expr string) (func(*Event) bool, error) {
	f, err := o.CompileFilter(expr)
	if err != nil {
		return nil, invalid("filter", "%s", err)
	}
	return func(ev *Event) bool {
		in, err := NewFilterInput(ev.Type, ev.Body)
		if err != nil {
			return false
		}
		ok, _ := f.Match(in)
		return ok
	}, nil
}
