package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"
)

// Output formats.
const (
	formatTable = "table"
	formatWide  = "wide" // a table with more columns
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// formats lists the output formats, for messages.
var formats = []string{formatTable, formatWide, formatJSON, formatYAML}

// writeYAML prints raw JSON as YAML: the same field names and values.
func writeYAML(w io.Writer, raw []byte) error {
	out, err := yaml.JSONToYAML(raw)
	if err != nil {
		return fmt.Errorf("format YAML answer: %w", err)
	}
	_, err = w.Write(out)
	return err
}

// writeYAMLItems prints items as one YAML list ("[]" when empty).
func writeYAMLItems(w io.Writer, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	raw, err := json.Marshal(items)
	if err != nil {
		return fmt.Errorf("format YAML answer: %w", err)
	}
	return writeYAML(w, raw)
}

// none is shown for an empty value in tables and "key: value" lines.
const none = "-"

// writeTable prints rows under headers as columns aligned with
// text/tabwriter. Tabs and newlines inside values become spaces so that
// they cannot break the alignment, and empty values are shown as "-".
func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, cell(c))
		}
		io.WriteString(tw, "\n")
	}
	line(headers)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}

// cell makes s fit in one table cell.
func cell(s string) string {
	if s == "" {
		return none
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// writeJSON prints raw JSON indented by two spaces, followed by a newline.
func writeJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("format JSON answer: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeJSONItems prints items as one indented JSON array ("[]" when empty).
func writeJSONItems(w io.Writer, items []json.RawMessage) error {
	if items == nil {
		items = []json.RawMessage{}
	}
	raw, err := json.Marshal(items)
	if err != nil {
		return fmt.Errorf("format JSON answer: %w", err)
	}
	return writeJSON(w, raw)
}

// field is one "key: value" line of an object's description.
type field struct {
	Key, Value string
}

// writeFields prints fields as aligned "key: value" lines.
func writeFields(w io.Writer, fields []field) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.Key, cell(f.Value))
	}
	return tw.Flush()
}

// flattenObject turns a JSON object into "key: value" fields in the order
// of its keys, with "id" and "name" first. Nested objects become dotted
// keys ("qos.disk_iops"); an empty object, null or an empty list is "-";
// a list of scalars is joined with ", ", and a list holding objects is
// shown as compact JSON. Working from the JSON rather than from Go types
// means that fields added to the API appear without a change here.
func flattenObject(raw []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var fields []field
	if err := flattenValue(dec, "", &fields); err != nil {
		return nil, fmt.Errorf("read JSON answer: %w", err)
	}
	var first, rest []field
	for _, f := range fields {
		if f.Key == "id" || f.Key == "name" {
			first = append(first, f)
		} else {
			rest = append(rest, f)
		}
	}
	return append(first, rest...), nil
}

func flattenValue(dec *json.Decoder, key string, out *[]field) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n := 0
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if key != "" {
					k = key + "." + k
				}
				if err := flattenValue(dec, k, out); err != nil {
					return err
				}
				n++
			}
			if _, err := dec.Token(); err != nil { // '}'
				return err
			}
			if n == 0 && key != "" {
				*out = append(*out, field{key, none})
			}
			return nil
		}
		// A list: read its elements whole.
		var elems []json.RawMessage
		for dec.More() {
			var e json.RawMessage
			if err := dec.Decode(&e); err != nil {
				return err
			}
			elems = append(elems, e)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return err
		}
		*out = append(*out, field{key, listValue(elems)})
	case string:
		*out = append(*out, field{key, t})
	case json.Number:
		*out = append(*out, field{key, t.String()})
	case bool:
		*out = append(*out, field{key, fmt.Sprint(t)})
	case nil:
		*out = append(*out, field{key, none})
	}
	return nil
}

// listValue renders a JSON list for one "key: value" line.
func listValue(elems []json.RawMessage) string {
	if len(elems) == 0 {
		return none
	}
	parts := make([]string, 0, len(elems))
	for _, e := range elems {
		e = bytes.TrimSpace(e)
		if len(e) > 0 && (e[0] == '{' || e[0] == '[') {
			compact, _ := json.Marshal(elems)
			return string(compact)
		}
		parts = append(parts, scalar(e))
	}
	return strings.Join(parts, ", ")
}

// scalar renders a JSON string, number, boolean or null as text.
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if string(raw) == "null" {
		return none
	}
	return string(raw)
}

// shortTime formats a time for a table: UTC to the second, "-" when zero.
func shortTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// byteSize formats a size in bytes with binary units, e.g. "1.5 GiB".
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
