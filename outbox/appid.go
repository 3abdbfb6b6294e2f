package outbox

// MaxAppIDLen is the longest app id, in bytes.
const MaxAppIDLen = 128

// CheckAppID refuses an app id that is not 1 to MaxAppIDLen bytes of
// A-Z a-z 0-9 . _ : -. The set is ASCII without / or %, so an app id is
// the same in a URL path, a JSON string, a Badger key and a PostgreSQL
// text column: what a store keys a webhook by is always what it records.
func CheckAppID(id string) error {
	if id == "" {
		return invalid("appId", "missing")
	}
	if len(id) > MaxAppIDLen {
		return invalid("appId", "longer than %d bytes", MaxAppIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !appIDByte(id[i]) {
			return invalid("appId", "may contain only A-Z a-z 0-9 . _ : - (byte %d is not one of them)", i)
		}
	}
	return nil
}

func appIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == ':' || c == '-'
}

// CheckStoredAppID is what a store accepts as a webhook's app: a valid app
// id, or OperationalApp, which no request can name.
func CheckStoredAppID(id string) error {
	if id == OperationalApp {
		return nil
	}
	return CheckAppID(id)
}
