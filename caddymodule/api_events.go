package caddymodule

import (
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-webhooks/caddy-webhooks/outbox"
)

// eventRoutes are the event log, replay and the operational history.
func (a *api) eventRoutes() map[string]apiFunc {
	return map[string]apiFunc{
		"GET /webhooks/apps/{appId}/events":                 a.listAppEvents,
		"GET /webhooks/apps/{appId}/events/{eventId}":       a.getAppEvent,
		"POST /webhooks/apps/{appId}/webhooks/{id}/replay":  a.replay,
		"GET /webhooks/operational/deliveries":              a.listOperationalDeliveries,
		"GET /webhooks/operational/deliveries/{deliveryId}": a.getOperationalDelivery,
	}
}

// eventView is an event of the log: its body as a string, byte for byte.
type eventView struct {
	ID         string    `json:"id"`
	Event      string    `json:"event"`
	ReceivedAt time.Time `json:"receivedAt"`
	Body       string    `json:"body"`
	Deliveries int       `json:"deliveries"`
}

// eventDetailView is one event with each of its deliveries.
type eventDetailView struct {
	ID         string              `json:"id"`
	Event      string              `json:"event"`
	ReceivedAt time.Time           `json:"receivedAt"`
	Body       string              `json:"body"`
	Deliveries []eventDeliveryView `json:"deliveries"`
}

type eventDeliveryView struct {
	ID        string        `json:"id"`
	WebhookID string        `json:"webhookId"`
	Status    outbox.Status `json:"status"`
}

// eventPageView is a page of the log. Partial says the filter stopped at
// its scan bound: nextCursor goes on from the last event it examined.
type eventPageView struct {
	Data       []eventView `json:"data"`
	NextCursor *string     `json:"nextCursor,omitempty"`
	Partial    bool        `json:"partial"`
}

// queryTime reads an optional RFC 3339 query parameter.
func queryTime(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &outbox.ValidationError{Field: name, Message: "must be an RFC 3339 time such as 2025-01-02T15:04:05Z"}
	}
	return t, nil
}

func queryLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, &outbox.ValidationError{Field: "limit", Message: "must be a positive integer"}
	}
	return n, nil
}

func (a *api) listAppEvents(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	q := r.URL.Query()
	query := outbox.EventQuery{Type: q.Get("event"), Filter: q.Get("filter"), Cursor: q.Get("cursor")}
	var err error
	if query.Since, err = queryTime(r, "since"); err != nil {
		return err
	}
	if query.Until, err = queryTime(r, "until"); err != nil {
		return err
	}
	if query.Limit, err = queryLimit(r); err != nil {
		return err
	}
	page, err := ob.ListEvents(r.Context(), r.PathValue("appId"), query)
	if err != nil {
		return err
	}
	out := eventPageView{Data: make([]eventView, len(page.Events)), Partial: page.Partial}
	for i, e := range page.Events {
		out.Data[i] = eventView{
			ID: e.Event.ID, Event: e.Event.Type, ReceivedAt: e.Event.ReceivedAt.UTC(),
			Body: string(e.Event.Body), Deliveries: e.Deliveries,
		}
	}
	if page.Next != "" {
		out.NextCursor = &page.Next
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) getAppEvent(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	ev, ds, err := ob.GetEvent(r.Context(), r.PathValue("appId"), r.PathValue("eventId"))
	if err != nil {
		return notFound(err, "event")
	}
	out := eventDetailView{
		ID: ev.ID, Event: ev.Type, ReceivedAt: ev.ReceivedAt.UTC(), Body: string(ev.Body),
		Deliveries: make([]eventDeliveryView, len(ds)),
	}
	for i, d := range ds {
		out.Deliveries[i] = eventDeliveryView{ID: d.ID, WebhookID: d.WebhookID, Status: d.Status}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) replay(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	var in struct {
		Since *string `json:"since"`
		Until *string `json:"until"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		return err
	}
	parse := func(field string, s *string) (time.Time, error) {
		if s == nil {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, *s)
		if err != nil {
			return time.Time{}, &outbox.ValidationError{Field: field, Message: "must be an RFC 3339 time such as 2025-01-02T15:04:05Z"}
		}
		return t, nil
	}
	if in.Since == nil {
		return &outbox.ValidationError{Field: "since", Message: "required (an RFC 3339 time)"}
	}
	since, err := parse("since", in.Since)
	if err != nil {
		return err
	}
	until, err := parse("until", in.Until)
	if err != nil {
		return err
	}
	n, err := ob.Replay(r.Context(), r.PathValue("appId"), r.PathValue("id"), since, until)
	if err != nil {
		return notFound(err, "webhook")
	}
	writeJSON(w, http.StatusAccepted, struct {
		Replayed int `json:"replayed"`
	}{n})
	return nil
}

func (a *api) listOperationalDeliveries(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	f, err := deliveryFilter(r)
	if err != nil {
		return err
	}
	ds, next, err := ob.OperationalDeliveries(r.Context(), f)
	if err != nil {
		return err
	}
	writeDeliveryPage(w, ds, next)
	return nil
}

func (a *api) getOperationalDelivery(w http.ResponseWriter, r *http.Request, ob *outbox.Outbox) error {
	d, ev, err := ob.OperationalDelivery(r.Context(), r.PathValue("deliveryId"))
	if err != nil {
		return notFound(err, "delivery")
	}
	writeJSON(w, http.StatusOK, newDeliveryView(d, ev, true))
	return nil
}
