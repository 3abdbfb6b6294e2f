package badgerstore

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseMapped hands the resident pages of the store's memory-mapped
// files (tables, value-log files, memtable logs) back to the kernel, and
// returns how many bytes of mappings it asked about.
//
// Badger v4 maps every one of those files (it has no option to read them
// with plain I/O), and a page once written or read stays in the process's
// RSS until the kernel needs the memory. A container limit and `kubectl
// top` count those pages, so without this the RSS grows with the data on
// disk. After a release, a page is read back from the page cache or the
// disk when Badger touches it again; what it touches between two releases
// is the file-backed part of the RSS.
//
// MADV_PAGEOUT only ever drops pages the kernel can read back from their
// file (or swap): a range that Badger unmapped and something else mapped
// between the read of /proc/self/maps and the call loses no data, so that
// race is harmless. Dirty pages stay until they are written back (every
// ingest's sync writes the logs back).
func releaseMapped(dir string) (int64, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + "/"
	var asked int64
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path, and the path may hold spaces
		line := sc.Bytes()
		slash := bytes.IndexByte(line, '/')
		if slash < 0 {
			continue
		}
		path := strings.TrimSuffix(string(line[slash:]), " (deleted)")
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		if ext := filepath.Ext(path); ext != ".sst" && ext != ".vlog" && ext != ".mem" {
			continue
		}
		addr, _, _ := bytes.Cut(line, []byte{' '})
		lo, hi, ok := bytes.Cut(addr, []byte{'-'})
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
		switch errno {
		case 0:
			asked += int64(end - start)
		case unix.ENOMEM:
			// Unmapped since the read: nothing to release.
		case unix.EINVAL:
			// A kernel before 5.4, without MADV_PAGEOUT.
			return asked, errNoPageout
		default:
			errs = append(errs, errno)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return asked, errors.Join(errs...)
}
