package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		rows    [][]string
		want    string
	}{
		{
			name:    "aligned columns, empty cells as -",
			headers: []string{"ID", "NAME", "HOST"},
			rows:    [][]string{{"srv-1", "web-1", ""}, {"srv-22", "db", "host-9"}},
			want: "ID      NAME   HOST\n" +
				"srv-1   web-1  -\n" +
				"srv-22  db     host-9\n",
		},
		{
			name:    "no rows: the header alone",
			headers: []string{"ID", "NAME"},
			want:    "ID  NAME\n",
		},
		{
			name:    "tabs and newlines in values cannot break columns",
			headers: []string{"ID", "DESCRIPTION", "X"},
			rows:    [][]string{{"rgn-1", "two\tlines\nhere", "y"}},
			want: "ID     DESCRIPTION     X\n" +
				"rgn-1  two lines here  y\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeTable(&buf, tt.headers, tt.rows); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlattenObject(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []field
	}{
		{
			name: "id and name first, the rest in the API's order",
			json: `{"id":"flv-1","revision":3,"name":"m1","vcpus":2,"hugepages":false,"description":"small"}`,
			want: []field{{"id", "flv-1"}, {"name", "m1"}, {"revision", "3"}, {"vcpus", "2"}, {"hugepages", "false"}, {"description", "small"}},
		},
		{
			name: "nested objects become dotted keys; empty ones are -",
			json: `{"id":"host-1","inventory":{"cpus":8,"hugepages":{"2048":512}},"usage":{},"qos":{"disk_iops":100}}`,
			want: []field{{"id", "host-1"}, {"inventory.cpus", "8"}, {"inventory.hugepages.2048", "512"}, {"usage", "-"}, {"qos.disk_iops", "100"}},
		},
		{
			name: "lists of scalars are joined, empty lists and null are -",
			json: `{"traits":["ssd","avx2"],"capabilities":[],"expires_at":null,"ratio":1.5}`,
			want: []field{{"traits", "ssd, avx2"}, {"capabilities", "-"}, {"expires_at", "-"}, {"ratio", "1.5"}},
		},
		{
			name: "lists of objects are compact JSON",
			json: `{"addresses":[{"ip":"10.0.0.5","mac":"52:54:00:00:00:01"}]}`,
			want: []field{{"addresses", `[{"ip":"10.0.0.5","mac":"52:54:00:00:00:01"}]`}},
		},
		{
			name: "large integers stay exact",
			json: `{"size_bytes":1099511627776}`,
			want: []field{{"size_bytes", "1099511627776"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := flattenObject([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := flattenObject([]byte(`{"id":`)); err == nil {
		t.Error("truncated JSON: no error")
	}
}

func TestWriteFields(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFields(&buf, []field{{"id", "srv-1"}, {"desired_state", "active"}, {"host_id", ""}}); err != nil {
		t.Fatal(err)
	}
	want := "id:            srv-1\n" +
		"desired_state: active\n" +
		"host_id:       -\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
}

func TestJSONOutput(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, []byte(`{"id":"rgn-1","name":"dc1"}`)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("{\n  \"id\": \"rgn-1\",\n  \"name\": \"dc1\"\n}\n", buf.String()); diff != "" {
		t.Errorf("object (-want +got):\n%s", diff)
	}
	buf.Reset()
	if err := writeJSONItems(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("[]\n", buf.String()); diff != "" {
		t.Errorf("no items (-want +got):\n%s", diff)
	}
	buf.Reset()
	if err := writeJSONItems(&buf, []json.RawMessage{[]byte(`{"id":"a"}`), []byte(`{"id":"b"}`)}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("[\n  {\n    \"id\": \"a\"\n  },\n  {\n    \"id\": \"b\"\n  }\n]\n", buf.String()); diff != "" {
		t.Errorf("items (-want +got):\n%s", diff)
	}
}

func TestPrintError(t *testing.T) {
	// apiErr builds the error api/client returns, from the JSON corrald sends.
	apiErr := func(status int, body string) error {
		var eb types.ErrorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil {
			t.Fatal(err)
		}
		return &client.Error{Status: status, Body: eb.Error}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "in use: one line per user",
			err: apiErr(409, `{"error":{"code":"flavor_in_use","message":"flavor flv-1 is in use by 2 objects",
				"details":{"count":2,"used_by":[{"kind":"server","id":"srv-1","name":"web-1"},{"kind":"server","id":"srv-2"}]}}}`),
			want: "corralctl: flavor_in_use: flavor flv-1 is in use by 2 objects\n" +
				"  count: 2\n" +
				"  used by: server srv-1 (web-1)\n" +
				"  used by: server srv-2\n",
		},
		{
			name: "field and lists",
			err: apiErr(400, `{"error":{"code":"invalid_argument","message":"kind: is \"x\"",
				"details":{"field":"kind","allowed":["vm","baremetal"],"max":1099511627776}}}`),
			want: "corralctl: invalid_argument: kind: is \"x\"\n" +
				"  allowed: vm, baremetal\n" +
				"  field: kind\n" +
				"  max: 1099511627776\n",
		},
		{
			name: "wrapped API error",
			err:  fmt.Errorf("find host %q: %w", "hv-1", apiErr(404, `{"error":{"code":"not_found","message":"host \"hv-1\": not found"}}`)),
			want: "corralctl: not_found: host \"hv-1\": not found\n",
		},
		{
			name: "with a hint",
			err: &hintError{err: apiErr(503, `{"error":{"code":"unavailable","message":"store unreachable"}}`),
				hint: "retry with: corralctl image upload img-1 disk.qcow2"},
			want: "corralctl: unavailable: store unreachable\n" +
				"  hint: retry with: corralctl image upload img-1 disk.qcow2\n",
		},
		{
			name: "not an API error",
			err:  errors.New("read token file (--token-file): open /x: no such file or directory"),
			want: "corralctl: read token file (--token-file): open /x: no such file or directory\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			printError(&buf, tt.err)
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
