package caddymodule

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-webhooks/caddy-webhooks/internal/bodysize"
	"github.com/caddy-webhooks/caddy-webhooks/outbox"
	"github.com/caddy-webhooks/caddy-webhooks/outbox/badgerstore"
)

func init() {
	caddy.RegisterModule(new(BadgerStorage))
}

// BadgerStorage keeps the webhooks app's data in an embedded Badger
// directory, owned by this one Caddy process. It is the default storage.
type BadgerStorage struct {
	// Path is the directory. Relative paths are relative to Caddy's
	// working directory; placeholders such as {env.WEBHOOKS_DIR} are
	// expanded. Default: Caddy's data directory + "/webhooks".
	Path string `json:"path,omitempty"`

	// EncryptionKey encrypts the data at rest: the standard base64
	// encoding of 16, 24 or 32 random bytes (AES-128, -192 or -256), for
	// example from `openssl rand -base64 32`. Placeholders such as
	// {env.WEBHOOKS_KEY} are expanded; one that expands to nothing is an
	// error, not a silently unencrypted database. The key of an existing
	// directory cannot be changed by a reload. Default: no encryption.
	EncryptionKey string `json:"encryption_key,omitempty"`

	// MemTableSize bounds each of Badger's two memtables, in bytes.
	// Default: 16 MiB.
	MemTableSize int64 `json:"memtable_size,omitempty"`

	// MinFreeSpace is the free disk space, in bytes, below which ingest is
	// refused with 503 (Badger writes through mmap, where a full disk is a
	// crash rather than an error). Default: twice the memtable size plus
	// 32 MiB.
	MinFreeSpace int64 `json:"min_free_space,omitempty"`

	// MappedReleaseInterval is how often the resident pages of Badger's
	// memory-mapped files are handed back to the kernel (Linux), so that
	// the RSS a container limit counts holds what the store touched in
	// that time rather than every file on disk. A negative value (off in
	// the Caddyfile) leaves them to the kernel, which reclaims them only
	// under memory pressure. Default: 5s.
	MappedReleaseInterval caddy.Duration `json:"mapped_release_interval,omitempty"`

	dir          string
	key          []byte
	memTableSize int64
	minFreeSpace int64
}

// CaddyModule returns the Caddy module information.
func (*BadgerStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhooks.storage.badger",
		New: func() caddy.Module { return new(BadgerStorage) },
	}
}

// Provision resolves the directory, decodes the key and fills in the
// default sizes; it opens nothing.
func (s *BadgerStorage) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	s.dir = repl.ReplaceKnown(s.Path, "")
	if s.dir == "" {
		s.dir = filepath.Join(caddy.AppDataDir(), "webhooks")
	}
	dir, err := filepath.Abs(s.dir)
	if err != nil {
		return fmt.Errorf("path: %v", err)
	}
	s.dir = dir
	if s.EncryptionKey != "" {
		key, err := decodeEncryptionKey(repl.ReplaceAll(s.EncryptionKey, ""))
		if err != nil {
			return fmt.Errorf("encryption_key: %v", err)
		}
		s.key = key
	}
	s.memTableSize, s.minFreeSpace = badgerstore.Sizes(s.MemTableSize, s.MinFreeSpace)
	return nil
}

// Validate checks the sizes.
func (s *BadgerStorage) Validate() error {
	if s.MemTableSize < 0 {
		return errors.New("memtable_size: must not be negative")
	}
	if s.MinFreeSpace < 0 {
		return errors.New("min_free_space: must not be negative")
	}
	return nil
}

// StorageKey is the absolute directory.
func (s *BadgerStorage) StorageKey() string { return s.dir }

// Fingerprint is the encryption key, which Badger cannot change on an
// open directory.
func (s *BadgerStorage) Fingerprint() string { return base64.StdEncoding.EncodeToString(s.key) }

// OpenStore opens the directory.
func (s *BadgerStorage) OpenStore(logger *zap.Logger, _ time.Duration) (outbox.Store, error) {
	store, err := badgerstore.Open(s.dir, badgerstore.Options{
		Logger: logger, EncryptionKey: s.key,
		MemTableSize: s.memTableSize, MinFreeBytes: s.minFreeSpace,
		MappedReleaseEvery: time.Duration(s.MappedReleaseInterval),
	})
	if err != nil {
		return nil, fmt.Errorf("opening storage %s (if another Caddy runs on it, use 'caddy reload' to change its config): %w", s.dir, err)
	}
	return store, nil
}

func (s *BadgerStorage) String() string { return s.dir }

// UnmarshalCaddyfile sets up the storage from Caddyfile tokens. Syntax:
//
//	storage badger {
//	    path           <dir>
//	    encryption_key <base64 key>
//	    memtable_size  <size>
//	    min_free_space <size>
//	    mapped_release_interval <duration>|off
//	}
func (s *BadgerStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "path":
			s.Path = d.Val()
		case "encryption_key":
			s.EncryptionKey = d.Val()
		case "memtable_size", "min_free_space":
			n, err := bodysize.Parse(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if opt == "memtable_size" {
				s.MemTableSize = n
			} else {
				s.MinFreeSpace = n
			}
		case "mapped_release_interval":
			if d.Val() == "off" {
				s.MappedReleaseInterval = -1
				break
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("mapped_release_interval: want a positive duration or off, got %q", d.Val())
			}
			s.MappedReleaseInterval = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized storage badger option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	return nil
}

// decodeEncryptionKey decodes a base64 key of 16, 24 or 32 bytes.
func decodeEncryptionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty after placeholder expansion (is the environment variable set?)")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not valid standard base64 (generate one with: openssl rand -base64 32)")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("decodes to %d bytes; want 16, 24 or 32 (generate one with: openssl rand -base64 32)", len(key))
}

// Interface guards
var (
	_ Storage               = (*BadgerStorage)(nil)
	_ caddy.Provisioner     = (*BadgerStorage)(nil)
	_ caddy.Validator       = (*BadgerStorage)(nil)
	_ caddyfile.Unmarshaler = (*BadgerStorage)(nil)
)
