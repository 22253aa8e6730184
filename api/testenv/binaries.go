package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	binMu   sync.Mutex
	binDirs = map[string]string{} // packages → directory
	binErrs = map[string]error{}
)

// Binaries builds the Go packages (paths relative to the test's package)
// once per test binary, into a temporary directory it returns; later
// calls with the same packages reuse that build. Call RemoveBinaries from
// TestMain when the tests are done.
func Binaries(t testing.TB, pkgs ...string) string {
	t.Helper()
	key := strings.Join(pkgs, "\x00")
	binMu.Lock()
	defer binMu.Unlock()
	if dir, ok := binDirs[key]; ok {
		return dir
	}
	if err := binErrs[key]; err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "corral-test-bin-")
	if err == nil {
		args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
		if out, berr := exec.Command("go", args...).CombinedOutput(); berr != nil {
			os.RemoveAll(dir)
			err = fmt.Errorf("go build %v: %v\n%s", pkgs, berr, out)
		}
	}
	if err != nil {
		binErrs[key] = err
		t.Fatal(err)
	}
	binDirs[key] = dir
	return dir
}

// RemoveBinaries removes what Binaries built.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	for k, dir := range binDirs {
		os.RemoveAll(dir)
		delete(binDirs, k)
	}
}
