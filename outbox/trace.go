package outbox

import (
	"context"
	"crypto/rand"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var w3c propagation.TraceContext

// ExtractTrace returns ctx carrying the W3C trace context of the headers
// h, unless ctx already has a span: Caddy's tracing directive puts the
// ingest span there, and that is the one to continue. Ingest stores the
// trace context of its ctx with the event.
func ExtractTrace(ctx context.Context, h http.Header) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return w3c.Extract(ctx, propagation.HeaderCarrier(h))
}

// traceOf returns the traceparent and tracestate of ctx's span, empty when
// it has none.
func traceOf(ctx context.Context) (parent, state string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	carrier := propagation.MapCarrier{}
	w3c.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
	return carrier.Get("traceparent"), carrier.Get("tracestate")
}

// setTraceHeaders continues the event's trace on an attempt: the same trace
// id and flags, a new parent id for this attempt, the trace state as
// received.
func setTraceHeaders(h http.Header, ev *Event) {
	if ev.TraceParent == "" {
		return
	}
	in := propagation.MapCarrier{"traceparent": ev.TraceParent}
	if ev.TraceState != "" {
		in["tracestate"] = ev.TraceState
	}
	sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), in))
	if !sc.IsValid() {
		return
	}
	var id trace.SpanID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	sc = sc.WithSpanID(id).WithRemote(false)
	w3c.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.HeaderCarrier(h))
}
