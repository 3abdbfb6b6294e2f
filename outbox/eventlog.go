package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// EventScanFactor bounds the work of a filtered event-log page: a page of
// limit events examines at most limit × EventScanFactor events with the
// filter, then stops early with a cursor to go on from, so an expression
// that matches nothing in a large window costs one bounded page, not the
// whole window.
const EventScanFactor = 50

// MaxFilterLen bounds a CEL filter expression.
const MaxFilterLen = 4 << 10

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
	if err := checkAppID(appID); err != nil {
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
		m, err := CompileEventFilter(q.Filter)
		if err != nil {
			return EventPage{}, err
		}
		f.Match, f.MaxScan = m, q.Limit*EventScanFactor
	}
	return o.store.Events(ctx, appID, f)
}

// GetEvent returns one retained event of the app and its deliveries.
func (o *Outbox) GetEvent(ctx context.Context, appID, id string) (*Event, []*Delivery, error) {
	if err := checkAppID(appID); err != nil {
		return nil, nil, err
	}
	return o.store.Event(ctx, appID, id)
}

// CompileEventFilter compiles a CEL expression over event and data into a
// predicate on events. An event whose body does not decode, or on which
// the expression fails (a missing field), does not match.
func CompileEventFilter(expr string) (func(*Event) bool, error) {
	if len(expr) > MaxFilterLen {
		return nil, invalid("filter", "longer than %d bytes", MaxFilterLen)
	}
	env, err := cel.NewEnv(
		cel.Variable("event", cel.StringType),
		cel.Variable("data", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
	)
	if err != nil {
		return nil, fmt.Errorf("building the filter environment: %w", err)
	}
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, invalid("filter", "%s", iss.Err())
	}
	if checked.OutputType() != cel.BoolType {
		return nil, invalid("filter", "must be a bool expression, not %s", checked.OutputType())
	}
	prg, err := env.Program(checked, cel.CostLimit(100_000), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, invalid("filter", "%s", err)
	}
	return func(ev *Event) bool {
		data, ok := eventData(ev.Body)
		if !ok {
			return false
		}
		out, _, err := prg.Eval(map[string]any{"event": ev.Type, "data": data})
		if err != nil {
			return false
		}
		b, ok := out.Value().(bool)
		return ok && b
	}, nil
}

// eventData decodes the data object of an event body, taking members by
// their exact names as ParseEvent does.
func eventData(body []byte) (map[string]any, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return nil, false
	}
	var data map[string]any
	if json.Unmarshal(top["data"], &data) != nil || data == nil {
		return nil, false
	}
	return data, true
}
