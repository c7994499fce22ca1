package ingress

import "strings"

// Response header blocks are encoded as HPACK literals without indexing (RFC 7541 6.2.2),
// naming a header by its static-table index when it has one, as nginx does: no dynamic
// table to keep in step with the client, no table searches, no allocations, and the
// bytes come straight from the backend's header lines.

// staticNames are the header names of HPACK's static table and their indexes.
var staticNames = map[string]uint64{
	":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17, "accept-ranges": 18,
	"accept": 19, "access-control-allow-origin": 20, "age": 21, "allow": 22, "authorization": 23,
	"cache-control": 24, "content-disposition": 25, "content-encoding": 26, "content-language": 27,
	"content-length": 28, "content-location": 29, "content-range": 30, "content-type": 31,
	"cookie": 32, "date": 33, "etag": 34, "expect": 35, "expires": 36, "from": 37, "host": 38,
	"if-match": 39, "if-modified-since": 40, "if-none-match": 41, "if-range": 42,
	"if-unmodified-since": 43, "last-modified": 44, "link": 45, "location": 46, "max-forwards": 47,
	"proxy-authenticate": 48, "proxy-authorization": 49, "range": 50, "referer": 51, "refresh": 52,
	"retry-after": 53, "server": 54, "set-cookie": 55, "strict-transport-security": 56,
	"transfer-encoding": 57, "user-agent": 58, "vary": 59, "via": 60, "www-authenticate": 61,
}

// appendStatus appends :status, indexed when the static table has the code.
func appendStatus(b []byte, code int) []byte {
	switch code {
	case 200, 204, 206:
		return append(b, 0x80|byte(8+(code-200+1)/3)) // 200 → 8, 204 → 9, 206 → 10
	case 304:
		return append(b, 0x80|11)
	case 400:
		return append(b, 0x80|12)
	case 404:
		return append(b, 0x80|13)
	case 500:
		return append(b, 0x80|14)
	}
	b = appendHpackInt(b, 4, 0, 8)
	return appendHpackStr(b, statusString(code))
}

// appendField appends a header field; name must be lower case.
func appendField(b []byte, name, value string) []byte {
	if idx := staticNames[name]; idx > 0 {
		b = appendHpackInt(b, 4, 0, idx)
	} else {
		b = append(b, 0)
		b = appendHpackStr(b, name)
	}
	return appendHpackStr(b, value)
}

// appendFieldLower appends a header field from a header line's name (any case) and value.
func appendFieldLower(b []byte, name, value []byte) []byte {
	var buf [64]byte
	if len(name) > len(buf) {
		return appendField(b, strings.ToLower(string(name)), string(value))
	}
	lower := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if idx := staticNames[string(lower)]; idx > 0 {
		b = appendHpackInt(b, 4, 0, idx)
	} else {
		b = append(b, 0)
		b = appendHpackStr(b, lower)
	}
	return appendHpackStr(b, value)
}

// appendHpackInt appends v with an n-bit prefix (RFC 7541 5.1) after the bits in first.
func appendHpackInt(b []byte, n uint, first byte, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(limit))
	for v -= limit; v >= 128; v >>= 7 {
		b = append(b, byte(v&0x7f)|0x80)
	}
	return append(b, byte(v))
}

// appendHpackStr appends a string literal, not Huffman-coded.
func appendHpackStr[S string | []byte](b []byte, s S) []byte {
	b = appendHpackInt(b, 7, 0, uint64(len(s)))
	return append(b, s...)
}
