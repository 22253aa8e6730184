package docs

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/testenv"
)

// metricsTable returns the series of the "Metrics" table of
// operations.md: name → source (corrald or agent).
func metricsTable(t *testing.T) map[string]string {
	t.Helper()
	doc := readDoc(t, "operations.md")
	_, table, ok := strings.Cut(doc, "\n### Metrics\n")
	if !ok {
		t.Fatal("operations.md has no ### Metrics section")
	}
	table, _, _ = strings.Cut(table, "\n### ")
	row := regexp.MustCompile("(?m)^\\| `(corral_[a-z0-9_]+)` \\| (corrald|agent) \\| (counter|gauge|histogram) \\|")
	out := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		out[m[1]] = m[2]
	}
	if len(out) < 20 {
		t.Fatalf("the Metrics table of operations.md has %d rows: the test no longer reads it", len(out))
	}
	return out
}

// TestRulesUseDocumentedSeries: every corral_ series the rules read is in
// the Metrics table, so that renaming one breaks this test, not an alert.
func TestRulesUseDocumentedSeries(t *testing.T) {
	table := metricsTable(t)
	rules := readDoc(t, "prometheus/corral-rules.yml")
	// Recording rules' own names (level:metric:operations) have colons.
	for _, m := range regexp.MustCompile(`\b(corral_[a-z0-9_]+)`).FindAllStringSubmatch(rules, -1) {
		name := m[1]
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if _, ok := table[base]; !ok {
			if i := strings.Index(rules, name); i > 0 && rules[i-1] == ':' {
				continue // part of a recording rule's name
			}
			t.Errorf("corral-rules.yml reads %s, which the Metrics table of operations.md does not list", name)
		}
	}
}

// TestPrometheusRules: promtool accepts the rules and their unit tests
// pass (the alerts fire when they should, and only then).
func TestPrometheusRules(t *testing.T) {
	promtool := testenv.Require(t, "CORRAL_TEST_PROMTOOL", "promtool (Debian package prometheus)")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/corral-rules.yml"},
		{"test", "rules", "prometheus/corral-rules.test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
