package signature

import (
	"errors"
	"testing"
	"time"
)

// Each header parser takes text from the network. The fuzz targets check
// that no input panics, that every failure is one of the documented errors,
// and that nothing but a real signature verifies.

var fuzzKeys = [][]byte{[]byte("fuzz secret")}

func checkFuzzResult(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("a fuzzed header verified without the key")
	}
	if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrExpired) {
		t.Fatalf("undocumented error %v", err)
	}
}

func FuzzXSignature(f *testing.F) {
	f.Add("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", []byte("what do ya want for nothing?"))
	f.Add("", []byte{})
	f.Add("zz", []byte("x"))
	f.Fuzz(func(t *testing.T, value string, body []byte) {
		checkFuzzResult(t, VerifyXSignature(fuzzKeys, body, value))
	})
}

func FuzzGitHub(f *testing.F) {
	f.Add("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", []byte("Hello, World!"))
	f.Add("sha256=", []byte{})
	f.Add("sha1=0a", []byte("x"))
	f.Fuzz(func(t *testing.T, value string, body []byte) {
		checkFuzzResult(t, VerifyGitHub(fuzzKeys, body, value))
	})
}

func FuzzShopify(f *testing.F) {
	f.Add("yCGX/RrK4fcuNtr3ztk5tQGsOBjcAzHpGLdMUrbV8yI=", []byte("foo=anything"))
	f.Add("====", []byte{})
	f.Add("yCGX/RrK4fcuNtr3ztk5tQGsOBjcAzHpGLdMUrbV8yI", []byte("x"))
	f.Fuzz(func(t *testing.T, value string, body []byte) {
		checkFuzzResult(t, VerifyShopify(fuzzKeys, body, value))
	})
}

func FuzzStripe(f *testing.F) {
	f.Add("t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef", []byte("{}"), int64(1533204620))
	f.Add("t=,v1=", []byte{}, int64(0))
	f.Add(",,=,t=-9223372036854775808,v1=x", []byte("x"), int64(-1))
	f.Add("t=9223372036854775807,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7", []byte("x"), int64(0))
	f.Fuzz(func(t *testing.T, value string, body []byte, now int64) {
		checkFuzzResult(t, VerifyStripe(fuzzKeys, body, value, time.Unix(now, 0), 5*time.Minute))
		ts, sums, err := ParseStripe(value)
		if err == nil && (ts == "" || len(sums) == 0 || len(sums) > maxSignatures) {
			t.Fatalf("ParseStripe(%q) = %q, %d sums, nil error", value, ts, len(sums))
		}
	})
}

func FuzzStandard(f *testing.F) {
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`), int64(1614265330))
	f.Add("a", "1", "v1a,xx v1, v1,,", []byte{}, int64(0))
	f.Add("", "", "", []byte{}, int64(0))
	f.Add("id", "-9223372036854775808", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", []byte("x"), int64(9223372036))
	f.Fuzz(func(t *testing.T, id, ts, value string, body []byte, now int64) {
		checkFuzzResult(t, VerifyStandard(fuzzKeys, id, ts, value, body, time.Unix(now, 0), 5*time.Minute))
		if n := len(ParseStandard(value)); n > maxSignatures {
			t.Fatalf("ParseStandard kept %d signatures", n)
		}
	})
}

func FuzzSlack(f *testing.F) {
	f.Add("1531420618", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", []byte(slackDocsBody), int64(1531420618))
	f.Add("", "v0=", []byte{}, int64(0))
	f.Add("x", "v0", []byte("x"), int64(0))
	f.Fuzz(func(t *testing.T, ts, value string, body []byte, now int64) {
		checkFuzzResult(t, VerifySlack(fuzzKeys, body, ts, value, time.Unix(now, 0), 5*time.Minute))
	})
}
