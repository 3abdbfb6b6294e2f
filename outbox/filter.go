package outbox

import (
	"encoding/json"
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// MaxFilterLen bounds a webhook's filter expression.
const MaxFilterLen = 4096

// FilterCostLimit bounds what one evaluation of a filter may do, in CEL's
// cost units (about one per operation, and per element a comprehension
// visits), so a hostile expression cannot stall ingest: evaluation stops
// there and counts as no match.
const FilterCostLimit = 100_000

// Filter is a compiled filter expression.
type Filter struct {
	prg cel.Program
}

// newFilterEnv declares what a filter sees: the event's type and its data
// object, with the extensions Caddy's expression matcher has.
func newFilterEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("event", cel.StringType),
		cel.Variable("data", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		ext.Bindings(),
		ext.Lists(),
		ext.Math(),
	)
}

// CompileFilter parses and type-checks a filter expression. Its error is
// the compiler's message, naming no field.
func (o *Outbox) CompileFilter(expr string) (*Filter, error) {
	if len(expr) > MaxFilterLen {
		return nil, fmt.Errorf("longer than %d bytes", MaxFilterLen)
	}
	if o.filterEnvErr != nil {
		return nil, fmt.Errorf("filters are unavailable: %w", o.filterEnvErr)
	}
	ast, iss := o.filterEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be of type bool, not %s", ast.OutputType())
	}
	prg, err := o.filterEnv.Program(ast, cel.CostLimit(FilterCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &Filter{prg: prg}, nil
}

// FilterInput is an event as filters see it, decoded once for all the
// filters of its webhooks.
type FilterInput struct {
	act interpreter.Activation
}

// NewFilterInput decodes an event's data for filters. An event whose data
// does not decode matches no filter.
func NewFilterInput(eventType string, body []byte) (*FilterInput, error) {
	var top struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	// Converted once here rather than by each filter's evaluation.
	data := types.DefaultTypeAdapter.NativeToValue(top.Data)
	act, err := interpreter.NewActivation(map[string]any{"event": types.String(eventType), "data": data})
	if err != nil {
		return nil, err
	}
	return &FilterInput{act: act}, nil
}

// Match reports whether the filter is true for the event. An evaluation
// that fails (a missing field, a type mismatch, the cost limit) is no match.
func (f *Filter) Match(in *FilterInput) (bool, error) {
	out, _, err := f.prg.Eval(in.act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}

// filterCache keeps each webhook's compiled filter, keyed by the webhook
// and recompiled when its expression changes, so ingest only evaluates.
type filterCache struct {
	mu   sync.RWMutex
	byID map[string]cachedFilter
}

type cachedFilter struct {
	expr string
	f    *Filter
	err  error
}

// maxCachedFilters bounds the cache; past it, the cache starts over (the
// webhooks of deleted apps would otherwise stay in it for good).
const maxCachedFilters = 100_000

func (o *Outbox) filterOf(w *Webhook) (*Filter, error) {
	c := &o.filters
	c.mu.RLock()
	got, ok := c.byID[w.ID]
	c.mu.RUnlock()
	if ok && got.expr == w.Filter {
		return got.f, got.err
	}
	f, err := o.CompileFilter(w.Filter)
	c.mu.Lock()
	if c.byID == nil || len(c.byID) >= maxCachedFilters {
		c.byID = map[string]cachedFilter{}
	}
	c.byID[w.ID] = cachedFilter{expr: w.Filter, f: f, err: err}
	c.mu.Unlock()
	return f, err
}

func (o *Outbox) forgetFilter(id string) {
	o.filters.mu.Lock()
	delete(o.filters.byID, id)
	o.filters.mu.Unlock()
}
