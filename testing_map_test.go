package webhooks

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A test named in TESTING.md: `dir.TestName` or `dir.TestName/case`.
var mapRef = regexp.MustCompile("`([a-z0-9_/]+)\\.((?:Test|Fuzz)[A-Za-z0-9_]*)(?:/([^`]+))?`")

// A test named without its package, which the check could not find.
var bareRef = regexp.MustCompile("`((?:Test|Fuzz)[A-Z][A-Za-z0-9_]*)(?:/[^`]*)?`")

var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]*)\(`)

// stringLit finds Go string literals, where t.Run and table cases keep
// the names of cases.
var stringLit = regexp.MustCompile(`"(?:[^"\\\n]|\\.)*"`)

// repoTests is what the repository's Go files hold: the test and fuzz
// functions of each directory's _test.go files, and every string literal
// (the names a case may have).
type repoTests struct {
	funcs   map[string]map[string]bool // directory -> function names
	strings map[string]bool
}

func scanRepo(t *testing.T, root string) repoTests {
	t.Helper()
	r := repoTests{funcs: map[string]map[string]bool{}, strings: map[string]bool{}}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, lit := range stringLit.FindAllString(string(src), -1) {
			if s, err := strconv.Unquote(lit); err == nil {
				r.strings[s] = true
			}
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		for _, m := range testFunc.FindAllStringSubmatch(string(src), -1) {
			if r.funcs[dir] == nil {
				r.funcs[dir] = map[string]bool{}
			}
			r.funcs[dir][m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scanning the repository's Go files: %v", err)
	}
	return r
}

// missing lists what a map names that the repository does not hold, and
// returns how many test names it found.
func (r repoTests) missing(doc string) (problems []string, refs int) {
	for _, m := range mapRef.FindAllStringSubmatch(doc, -1) {
		refs++
		dir, name, sub := m[1], m[2], m[3]
		switch {
		case r.funcs[dir] == nil:
			problems = append(problems, m[0]+": no tests in directory "+dir)
		case !r.funcs[dir][name]:
			problems = append(problems, m[0]+": no func "+name+" in "+dir+"/*_test.go")
		case sub != "" && !r.strings[sub]:
			problems = append(problems, m[0]+": no case named \""+sub+"\" in the repository")
		}
	}
	for _, m := range bareRef.FindAllStringSubmatch(doc, -1) {
		problems = append(problems, m[0]+": name its package, as `dir."+m[1]+"`")
	}
	return problems, refs
}

// TestTestingMap checks that every test TESTING.md names exists, so the
// map of promises to tests stays true as tests are renamed or removed.
func TestTestingMap(t *testing.T) {
	doc, err := os.ReadFile("TESTING.md")
	if err != nil {
		t.Fatal(err)
	}
	repo := scanRepo(t, ".")

	// The check itself: a map naming what is not there must fail it.
	bad := "`outbox.TestNoSuchTest` `nosuchdir.TestX` `outbox/badgerstore.TestStore/No Such Case` `TestBare`"
	if problems, refs := repo.missing(bad); len(problems) != 4 || refs != 3 {
		t.Fatalf("the check found %d problems in %d names of a map naming four things that do not exist, want 4 in 3:\n%s",
			len(problems), refs, strings.Join(problems, "\n"))
	}

	problems, refs := repo.missing(string(doc))
	for _, p := range problems {
		t.Errorf("TESTING.md: %s", p)
	}
	// A map whose names the pattern no longer sees would pass vacuously.
	if refs < 100 {
		t.Errorf("TESTING.md names %d tests, want the whole map (at least 100)", refs)
	}
}
