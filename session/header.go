package session

import (
	"encoding/binary"
	"net/textproto"
)

// A session keeps the opening request's header packed in one string rather
// than as a map: a map of even a few headers takes ~450 bytes more, for
// every session, while most applications read the header once, if at all.
//
// The packing: uvarint(number of keys), uvarint(number of values), then for
// each key uvarint(len(key)), key, uvarint(number of its values + 1, 0 for
// a nil slice), and each value as uvarint(len(value)), value. A nil header
// packs to "", so that it unpacks to nil again.

// packHeader packs h into one string.
func packHeader(h textproto.MIMEHeader) string {
	if h == nil {
		return ""
	}
	n, nv := 2*binary.MaxVarintLen64, 0
	for k, vv := range h {
		n += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vv {
			n += binary.MaxVarintLen64 + len(v)
		}
		nv += len(vv)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(h)))
	b = binary.AppendUvarint(b, uint64(nv))
	for k, vv := range h {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		if vv == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(vv))+1)
		for _, v := range vv {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return string(b)
}

// unpackHeader returns a new map of what packHeader packed. Its keys and
// values are substrings of p: nothing is copied but the map and one slice of
// all the values, as http.Header.Clone does.
func unpackHeader(p string) textproto.MIMEHeader {
	if p == "" {
		return nil
	}
	next := func() int {
		var u uint64
		for shift := 0; ; shift += 7 {
			c := p[0]
			p = p[1:]
			u |= uint64(c&0x7f) << shift
			if c < 0x80 {
				return int(u)
			}
		}
	}
	str := func() string {
		n := next()
		s := p[:n]
		p = p[n:]
		return s
	}
	keys := next()
	h := make(textproto.MIMEHeader, keys)
	sv := make([]string, next())
	for range keys {
		k := str()
		n := next()
		if n == 0 {
			h[k] = nil
			continue
		}
		vv := sv[: n-1 : n-1]
		sv = sv[n-1:]
		for i := range vv {
			vv[i] = str()
		}
		h[k] = vv
	}
	return h
}
