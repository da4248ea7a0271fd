package session

import (
	"encoding/binary"
	"net/textproto"
)

// A session keeps what it has of the request that opened it (Info's
// remote address, URI and header) packed in one string rather than as a
// map and strings of their own: a map of even a few headers takes ~450
// bytes more, for every session, while most applications read the header
// once, if at all.
//
// The packing: uvarint(len(RemoteAddr)), RemoteAddr, uvarint(len(RequestURI)),
// RequestURI, then, unless Header is nil, uvarint(number of keys),
// uvarint(number of values), and for each key uvarint(len(key)), key,
// uvarint(number of its values + 1, 0 for a nil slice), and each value as
// uvarint(len(value)), value.

// packOpening packs info's RemoteAddr, RequestURI and Header into one string.
func packOpening(info Info) string {
	h := info.Header
	n, nv := 2*binary.MaxVarintLen64+len(info.RemoteAddr)+len(info.RequestURI), 0
	for k, vv := range h {
		n += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vv {
			n += binary.MaxVarintLen64 + len(v)
		}
		nv += len(vv)
	}
	b := make([]byte, 0, n+2*binary.MaxVarintLen64)
	b = appendString(b, info.RemoteAddr)
	b = appendString(b, info.RequestURI)
	if h == nil {
		return string(b)
	}
	b = binary.AppendUvarint(b, uint64(len(h)))
	b = binary.AppendUvarint(b, uint64(nv))
	for k, vv := range h {
		b = appendString(b, k)
		if vv == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(vv))+1)
		for _, v := range vv {
			b = appendString(b, v)
		}
	}
	return string(b)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// opening reads a packed opening request. Every string it returns is a
// substring of the packing: nothing is copied.
type opening string

// uvarint takes a uvarint from the front of o.
func (o *opening) uvarint() int {
	var u uint64
	for shift := 0; ; shift += 7 {
		c := (*o)[0]
		*o = (*o)[1:]
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int(u)
		}
	}
}

// str takes a length-prefixed string from the front of o.
func (o *opening) str() string {
	n := o.uvarint()
	s := string((*o)[:n])
	*o = (*o)[n:]
	return s
}

// remoteAddr is the packed RemoteAddr.
func (o opening) remoteAddr() string { return o.str() }

// info returns the packed Info, its Header a new map (as http.Header.Clone
// makes: the map and one slice of all the values).
func (o opening) info() Info {
	info := Info{RemoteAddr: o.str(), RequestURI: o.str()}
	if o == "" {
		return info
	}
	keys := o.uvarint()
	h := make(textproto.MIMEHeader, keys)
	sv := make([]string, o.uvarint())
	for range keys {
		k := o.str()
		n := o.uvarint()
		if n == 0 {
			h[k] = nil
			continue
		}
		vv := sv[: n-1 : n-1]
		sv = sv[n-1:]
		for i := range vv {
			vv[i] = o.str()
		}
		h[k] = vv
	}
	info.Header = h
	return info
}
