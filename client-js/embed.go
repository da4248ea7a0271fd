// Package clientjs holds the built browser client, embedded so that Go users
// need no Node: the server serves it at {prefix}/client.js. Rebuild it with
// `node client-js/build.js` after changing client-js/src.
package clientjs

import (
	"crypto/sha256"
	_ "embed" // the bundle
	"encoding/hex"
)

// Bundle is the minified UMD bundle (global CometKit).
//
//go:embed dist/cometkit.min.js
var Bundle []byte

// Version is a short hash of Bundle: a URL carrying it (?v=Version) may be
// cached for ever, and it is the bundle's ETag.
var Version = func() string {
	sum := sha256.Sum256(Bundle)
	return hex.EncodeToString(sum[:8])
}()
