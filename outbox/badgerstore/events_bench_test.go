package badgerstore

import (
	"testing"

	"github.com/caddy-webhooks/caddy-webhooks/outbox/storetest"
)

func BenchmarkEventLog(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchEventLog(b, s, nil)
}
