package nodebin

import (
	"bytes"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/k1s-io/k1s/internal/imagebuild"
)

// PauseImage returns an image tarball of the sandbox image ref: one layer
// holding the embedded pause program as /pause.
func PauseImage(ref string) ([]byte, error) {
	bin, err := Read(Pause)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = imagebuild.Write(&out, ref, []imagebuild.File{{Name: "pause", Mode: 0o755, Data: bin}},
		v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
	return out.Bytes(), err
}
