package badgerstore

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// releaseMappedEvery is how often the resident pages of mapped files are
// released by default: what the store touches in that time is what its
// file-backed RSS can grow to.
const releaseMappedEvery = 5 * time.Second

// errNoPageout is a kernel before 5.4, without MADV_PAGEOUT.
var errNoPageout = errors.New("the kernel does not support MADV_PAGEOUT")

// releaseLoop releases mapped pages every interval until Close. It stops
// for good on a kernel that cannot do it.
func (s *Store) releaseLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		asked, err := releaseMapped(s.mapDir)
		if errors.Is(err, errNoPageout) {
			s.log.Warn("cannot release pages of mapped files: the RSS will include them", zap.Error(err))
			return
		}
		if err != nil {
			s.log.Warn("releasing pages of mapped files", zap.Int64("mapped_bytes", asked), zap.Error(err))
			continue
		}
		s.log.Debug("released pages of mapped files", zap.Int64("mapped_bytes", asked))
	}
}
