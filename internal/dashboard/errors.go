package dashboard

import (
	"errors"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// describe turns an API error about what ("list pods in namespace x") into
// the message the page shows, so a missing right reads as "forbidden", not
// as an empty table.
func describe(err error, what string) string {
	switch {
	case err == nil:
		return ""
	case apierrors.IsForbidden(err):
		return "forbidden: " + what + " (the signed-in token's RBAC rules do not allow it)"
	case apierrors.IsUnauthorized(err):
		return "unauthorized: the cluster no longer accepts the token (expired?); sign out and sign in again"
	case apierrors.IsNotFound(err):
		return "not found: " + what
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return what + ": cannot reach the Kubernetes API: " + ue.Err.Error()
	}
	return what + ": " + err.Error()
}

// statusOf is the HTTP status that goes with an API error.
func statusOf(err error) int {
	switch {
	case apierrors.IsForbidden(err):
		return 403
	case apierrors.IsUnauthorized(err):
		return 401
	case apierrors.IsNotFound(err):
		return 404
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return 400
	case apierrors.IsConflict(err):
		return 409
	}
	return 502
}
