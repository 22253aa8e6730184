package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/corral-cloud/corral/api/types"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // an error of the API, or any other failure
	exitUsage = 2 // bad command line
)

// usageError is a mistake on the command line; it exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// hintError adds a hint for the user, printed on a line of its own after
// the error, such as the command that finishes a half-done job.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintError) Unwrap() error { return e.err }

// printError writes err to w. An API error is printed as
// "corralctl: <code>: <message>" followed by its details, one per line;
// any other error as "corralctl: <text>".
func printError(w io.Writer, err error) {
	var ae *types.Error
	if errors.As(err, &ae) && ae != nil {
		fmt.Fprintf(w, "corralctl: %s: %s\n", ae.Code, ae.Message)
		for _, line := range detailLines(ae.Details) {
			fmt.Fprintf(w, "  %s\n", line)
		}
	} else {
		fmt.Fprintf(w, "corralctl: %v\n", err)
	}
	var he *hintError
	if errors.As(err, &he) {
		fmt.Fprintf(w, "  hint: %s\n", he.hint)
	}
}

// detailLines renders an API error's details, keys sorted, "used_by" as
// one line per object.
func detailLines(details map[string]any) []string {
	keys := make([]string, 0, len(details))
	for k := range details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var lines []string
	for _, k := range keys {
		v := normalize(details[k])
		if k == "used_by" {
			if refs, ok := asRefs(v); ok {
				for _, r := range refs {
					l := "used by: " + r.Kind + " " + r.ID
					if r.Name != "" {
						l += " (" + r.Name + ")"
					}
					lines = append(lines, l)
				}
				continue
			}
		}
		lines = append(lines, k+": "+detailValue(v))
	}
	return lines
}

// asRefs reads a detail that holds a list of types.Ref.
func asRefs(v any) ([]types.Ref, bool) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	var refs []types.Ref
	if json.Unmarshal(raw, &refs) != nil {
		return nil, false
	}
	return refs, true
}

// detailValue renders one detail: strings and numbers as they are, lists
// of scalars joined with ", ", anything else as compact JSON.
func detailValue(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			switch e.(type) {
			case map[string]any, []any:
				raw, _ := json.Marshal(t)
				return string(raw)
			}
			parts = append(parts, detailValue(e))
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		raw, _ := json.Marshal(t)
		return string(raw)
	case float64:
		// encoding/json decodes every number as float64: print 1099511627776,
		// not 1.099511627776e+12.
		return strconv.FormatFloat(t, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// normalize gives a detail the shape encoding/json decodes it to, as
// details made by corralctl itself hold Go types such as []string.
func normalize(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(raw, &out) != nil {
		return v
	}
	return out
}
