package signature

import (
	"net/http"
	"slices"
	"time"
)

// Request is what a Scheme looks at to verify a delivery.
type Request struct {
	// Header holds the request headers.
	Header http.Header
	// Body is the raw body, exactly as received.
	Body []byte
	// SignatureHeader, when set, replaces the scheme's signature header
	// name, for senders that use the scheme under another header. The
	// scheme's timestamp and id headers keep their names.
	SignatureHeader string
	// Now is the time timestamps are checked against.
	Now time.Time
	// Tolerance is how far a signed timestamp may be from Now, in either
	// direction; zero or less skips the check.
	Tolerance time.Duration
}

// Scheme is one webhook signing convention: where the signature travels,
// how a configured secret becomes the HMAC key, and how a request is
// checked. The schemes are fixed values; look one up with SchemeByName.
type Scheme struct {
	// Name is how configuration refers to the scheme.
	Name string
	// Header is the header that carries the signature.
	Header string
	// Timestamped reports whether the scheme signs a timestamp that is
	// checked against a tolerance.
	Timestamped bool

	// idHeaders name the headers that carry a delivery id, most preferred
	// first; none when the scheme has no id.
	idHeaders []string
	key       func(secret string) ([]byte, error)
	verify    func(s *Scheme, r Request, keys [][]byte) error
}

// Key turns a configured secret into the scheme's HMAC key.
func (s *Scheme) Key(secret string) ([]byte, error) {
	if s.key == nil {
		return []byte(secret), nil
	}
	return s.key(secret)
}

// Verify checks r against the keys. On failure the error wraps ErrMissing
// (a *MissingHeaderError names the header), ErrMalformed, ErrMismatch or
// ErrExpired; its text never contains a key or an expected signature.
func (s *Scheme) Verify(r Request, keys [][]byte) error {
	return s.verify(s, r, keys)
}

// HasID reports whether the scheme's requests carry a delivery id that
// stays the same when the sender retries.
func (s *Scheme) HasID() bool { return len(s.idHeaders) > 0 }

// ID returns the delivery id of a request, or "" if it has none.
func (s *Scheme) ID(h http.Header) string {
	for _, name := range s.idHeaders {
		if v := h.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// signatureHeader is the header a request's signature is read from.
func (s *Scheme) signatureHeader(r Request) string {
	if r.SignatureHeader != "" {
		return r.SignatureHeader
	}
	return s.Header
}

// single reads the one header a body-only scheme needs and names it when absent.
func (s *Scheme) single(r Request) (string, error) {
	name := s.signatureHeader(r)
	v := r.Header.Get(name)
	if v == "" {
		return "", &MissingHeaderError{Header: name}
	}
	return v, nil
}

var schemes = []*Scheme{
	{
		Name:   "x-signature",
		Header: XSignatureHeader,
		// Our sender puts the event id here beside X-Signature; it is not
		// signed in this scheme, but a forged id gains nothing without a
		// valid body signature.
		idHeaders: []string{StandardIDHeader},
		verify: func(s *Scheme, r Request, keys [][]byte) error {
			v, err := s.single(r)
			if err != nil {
				return err
			}
			return VerifyXSignature(keys, r.Body, v)
		},
	},
	{
		Name:        "standard",
		Header:      StandardSignatureHeader,
		Timestamped: true,
		idHeaders:   []string{StandardIDHeader, SvixIDHeader},
		key:         StandardKey,
		verify:      verifyStandard,
	},
	{
		Name:      "github",
		Header:    GitHubHeader,
		idHeaders: []string{GitHubDeliveryHeader},
		verify: func(s *Scheme, r Request, keys [][]byte) error {
			v, err := s.single(r)
			if err != nil {
				return err
			}
			return VerifyGitHub(keys, r.Body, v)
		},
	},
	{
		Name:        "stripe",
		Header:      StripeHeader,
		Timestamped: true,
		verify: func(s *Scheme, r Request, keys [][]byte) error {
			v, err := s.single(r)
			if err != nil {
				return err
			}
			return VerifyStripe(keys, r.Body, v, r.Now, r.Tolerance)
		},
	},
	{
		Name:   "shopify",
		Header: ShopifyHeader,
		verify: func(s *Scheme, r Request, keys [][]byte) error {
			v, err := s.single(r)
			if err != nil {
				return err
			}
			return VerifyShopify(keys, r.Body, v)
		},
	},
	{
		Name:        "slack",
		Header:      SlackHeader,
		Timestamped: true,
		verify: func(s *Scheme, r Request, keys [][]byte) error {
			v, err := s.single(r)
			if err != nil {
				return err
			}
			ts := r.Header.Get(SlackTimestampHeader)
			if ts == "" {
				return &MissingHeaderError{Header: SlackTimestampHeader}
			}
			return VerifySlack(keys, r.Body, ts, v, r.Now, r.Tolerance)
		},
	},
}

// verifyStandard reads the webhook- headers, or the svix- ones a Svix
// sender uses, without mixing the two families in one request.
func verifyStandard(s *Scheme, r Request, keys [][]byte) error {
	idName, tsName, sigName := StandardIDHeader, StandardTimestampHeader, s.signatureHeader(r)
	if r.Header.Get(idName) == "" && r.Header.Get(SvixIDHeader) != "" {
		idName, tsName = SvixIDHeader, SvixTimestampHeader
		if r.SignatureHeader == "" {
			sigName = SvixSignatureHeader
		}
	}
	id, ts, sig := r.Header.Get(idName), r.Header.Get(tsName), r.Header.Get(sigName)
	switch {
	case sig == "":
		return &MissingHeaderError{Header: sigName}
	case id == "":
		return &MissingHeaderError{Header: idName}
	case ts == "":
		return &MissingHeaderError{Header: tsName}
	}
	return VerifyStandard(keys, id, ts, sig, r.Body, r.Now, r.Tolerance)
}

// SchemeByName returns the scheme configuration calls name, or nil. Each
// call returns a fresh copy, so a caller cannot change what others see.
func SchemeByName(name string) *Scheme {
	i := slices.IndexFunc(schemes, func(s *Scheme) bool { return s.Name == name })
	if i < 0 {
		return nil
	}
	s := *schemes[i]
	return &s
}

// SchemeNames lists the names SchemeByName knows, default first.
func SchemeNames() []string {
	names := make([]string, len(schemes))
	for i, s := range schemes {
		names[i] = s.Name
	}
	return names
}
