package ingress

import (
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// What the encoder writes, an HPACK decoder reads back: static-table names and statuses,
// other names, long values (multi-byte lengths), upper-case names from backends.
func TestHpackEncoding(t *testing.T) {
	long := strings.Repeat("v", 300)
	for _, tc := range []struct {
		status int
		lines  [][2]string // as the backend wrote them
		want   []hpack.HeaderField
	}{
		{200, [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", "5"}},
			[]hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/plain"}, {Name: "content-length", Value: "5"}}},
		{204, nil, []hpack.HeaderField{{Name: ":status", Value: "204"}}},
		{206, nil, []hpack.HeaderField{{Name: ":status", Value: "206"}}},
		{304, [][2]string{{"ETag", `"x"`}}, []hpack.HeaderField{{Name: ":status", Value: "304"}, {Name: "etag", Value: `"x"`}}},
		{404, nil, []hpack.HeaderField{{Name: ":status", Value: "404"}}},
		{503, [][2]string{{"X-Custom-Header", long}, {"Retry-After", "5"}},
			[]hpack.HeaderField{{Name: ":status", Value: "503"}, {Name: "x-custom-header", Value: long}, {Name: "retry-after", Value: "5"}}},
		{299, [][2]string{{strings.Repeat("X", 70), "long name"}},
			[]hpack.HeaderField{{Name: ":status", Value: "299"}, {Name: strings.Repeat("x", 70), Value: "long name"}}},
	} {
		b := appendStatus(nil, tc.status)
		for _, l := range tc.lines {
			b = appendFieldLower(b, []byte(l[0]), []byte(l[1]))
		}
		got, err := hpack.NewDecoder(4096, nil).DecodeFull(b)
		if err != nil {
			t.Errorf("status %d: decode: %v", tc.status, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("status %d: decoded %v; want %v", tc.status, got, tc.want)
			continue
		}
		for i := range got {
			if got[i].Name != tc.want[i].Name || got[i].Value != tc.want[i].Value {
				t.Errorf("status %d: field %d = %v; want %v", tc.status, i, got[i], tc.want[i])
			}
		}
	}
}
