package nodebin

import "embed"

// The helper binaries built for this GOARCH (the file name's suffix
// selects it); each architecture has its own folder so that building one
// never replaces the other's.
//
//go:embed all:bin/arm64
var files embed.FS

const binDir = "bin/arm64"
