// Package bodysize holds the body caps the sender and the receiver share
// and reads them as Caddyfile sizes.
package bodysize

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
)

// Default caps a request body when none is configured: 1 MB, as humanize
// and Caddy's request_body max_size read "1MB".
const Default = 1_000_000

// Parse reads a size such as 1MB or 512KiB; it must be positive.
func Parse(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %v", s, err)
	}
	if n == 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(n), nil
}
