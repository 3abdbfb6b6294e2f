package receiver

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-webhooks/caddy-webhooks/internal/httpjson"
)

var errBodyTooLarge = errors.New("body too large")

// firstBodyBuffer is the most memory taken for a body before its bytes
// arrive. A declared Content-Length is a promise, not bytes: sizing the
// buffer from it would let a client that declares a megabyte and sends
// one byte hold a megabyte for as long as it keeps the connection open.
const firstBodyBuffer = 4 << 10

// readBody reads the whole body, refusing one over limit before reading it
// when the length is declared. The buffer grows as bytes arrive, doubling
// up to the declared length or the limit, so memory follows what was
// received. The bytes returned are owned by the caller: they are handed to
// the next handler, which may still be reading them (reverse_proxy's
// transport can outlive ServeHTTP), so they never come from a pool.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errBodyTooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	// One byte past the limit tells a body that is too large from one
	// that is exactly at it; one byte past a declared length lets the
	// final read see the end without growing the buffer.
	ceiling := limit + 1
	if r.ContentLength >= 0 {
		ceiling = r.ContentLength + 1
	}
	buf := make([]byte, 0, min(ceiling, firstBodyBuffer))
	rd := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			// A body longer than it declared (possible only below
			// net/http) may still grow to the limit.
			if int64(len(buf)) >= ceiling {
				ceiling = limit + 1
			}
			if int64(cap(buf)) < ceiling {
				grown := make([]byte, len(buf), min(2*int64(cap(buf)), ceiling))
				copy(grown, buf)
				buf = grown
			}
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(buf)) > limit {
		return nil, errBodyTooLarge
	}
	return buf, nil
}

// setBody hands the verified bytes to the next handler as the request body,
// rewindable through GetBody, with its length now known: a chunked request
// is forwarded with a Content-Length, its bytes unchanged.
func setBody(r *http.Request, body []byte) {
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	if len(body) == 0 {
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	}
}

// writeJSON answers with status and v as JSON, as every handler of the
// project does.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	httpjson.Write(w, status, v)
	return nil
}

// refuseUnread answers a request whose body was not read, or not read
// whole, with status and a JSON error, and closes an HTTP/1 connection
// after it: what remains of the body on the wire is not worth reading,
// and must not be read as the next request. (HTTP/2 ends the stream
// alone; Connection there would shut down every other stream with it.)
func refuseUnread(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	return writeJSON(w, status, map[string]string{"error": msg})
}

// statusRecorder notes the final status the next handler answers with, so
// only deliveries the backend accepted are remembered as seen.
type statusRecorder struct {
	*caddyhttp.ResponseWriterWrapper
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	// 1xx responses are interim; the delivery's answer comes after them.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.Write(b)
}

// ReadFrom is overridden because the wrapper's would bypass Write.
func (w *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}
