// Package testenv decides whether integration tests that need real
// services (PostgreSQL, libvirt, Open vSwitch, ipmi_sim) run.
//
// Such a test calls Require with the environment variable that points at the
// service. Locally, a test whose variable is unset is skipped with a message
// saying how to run it; under CI=true it fails instead, so that CI can never
// pass by skipping the tests that matter.
package testenv

import (
	"os"
	"testing"
)

// CI reports whether the tests run in CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Require returns the value of the environment variable name. When it is
// empty the test is skipped, or failed under CI=true.
func Require(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if CI() {
		t.Fatalf("%s is not set: %s is required under CI=true (run the tests with .ci/test, which starts it)", name, what)
	}
	t.Skipf("%s is not set: skipping the test that needs %s (.ci/test sets it up)", name, what)
	return ""
}
