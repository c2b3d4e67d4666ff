package s3objects

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/nixcnb/nix-buildpack/binarycache"
)

// Kinds of S3 failure a caller may want to tell apart (errors.Is).
var (
	// ErrCredentials: S3 rejected the request's credentials or signature,
	// or the credentials may not access the bucket.
	ErrCredentials = errors.New("S3 rejected the credentials")
	// ErrNoCredentials: no credentials were given and the SDK's default
	// chain found none.
	ErrNoCredentials = errors.New("no S3 credentials found")
	// ErrNoSuchBucket: the bucket does not exist.
	ErrNoSuchBucket = errors.New("S3 bucket does not exist")
	// ErrUnreachable: no HTTP response came back from the endpoint.
	ErrUnreachable = errors.New("cannot reach the S3 endpoint")
)

// credentialCodes are the S3 error codes that mean "these credentials are
// wrong or not allowed". "Forbidden" is what a HEAD request gets, as HEAD
// responses carry no error body.
var credentialCodes = map[string]bool{
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
	"AccessDenied":          true,
	"InvalidToken":          true,
	"ExpiredToken":          true,
	"TokenRefreshRequired":  true,
	"InvalidSecurity":       true,
	"Forbidden":             true,
	"Unauthorized":          true,
}

// explain turns an SDK error into one a person can act on. It never
// includes credentials: SDK errors carry none, and the endpoint is shown
// without any user info.
func (s *Objects) explain(doing, key string, err error) error {
	where := s.URL(key)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", doing, where, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		detail := code
		if m := apiErr.ErrorMessage(); m != "" && m != code {
			detail += ": " + m
		}
		switch {
		case code == "NoSuchKey" || code == "NotFound":
			// HEAD answers 404 NotFound both for a missing key and for a key
			// in a missing bucket; the next GET or PUT tells them apart.
			return fmt.Errorf("%s %s: %w", doing, where, binarycache.ErrNotFound)
		case code == "NoSuchBucket":
			return &failure{kind: ErrNoSuchBucket, cause: err, msg: fmt.Sprintf(
				"S3 bucket %q does not exist at %s (while %s %s): create it or correct the bucket name",
				s.bucket, s.endpoint, doing, where)}
		case credentialCodes[code]:
			return &failure{kind: ErrCredentials, cause: err, msg: fmt.Sprintf(
				"S3 rejected the credentials for bucket %s at %s (%s, while %s %s): check the access key and secret, "+
					"and that they may read and write this bucket", s.bucket, s.endpoint, detail, doing, where)}
		}
		return fmt.Errorf("S3 error while %s %s at %s: %s (HTTP %d): %w", doing, where, s.endpoint,
			detail, httpStatus(err), err)
	}
	var sendErr *smithyhttp.RequestSendError
	if errors.As(err, &sendErr) {
		return &failure{kind: ErrUnreachable, cause: err, msg: fmt.Sprintf(
			"cannot reach the S3 endpoint %s (while %s %s): %v; check the endpoint URL and that the server is up and reachable",
			s.endpoint, doing, where, sendErr.Err)}
	}
	if msg := err.Error(); strings.Contains(msg, "failed to retrieve credentials") ||
		strings.Contains(msg, "failed to refresh cached credentials") {
		return &failure{kind: ErrNoCredentials, cause: err, msg: fmt.Sprintf(
			"no S3 credentials found for bucket %s (while %s %s): give an access key and secret "+
				"(e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): %v", s.bucket, doing, where, err)}
	}
	return fmt.Errorf("%s %s at %s: %w", doing, where, s.endpoint, err)
}

// failure is an S3 error a person can act on: its message stands alone,
// and it matches its kind (errors.Is) and the SDK's error (errors.As).
type failure struct {
	kind  error
	msg   string
	cause error
}

func (f *failure) Error() string        { return f.msg }
func (f *failure) Is(target error) bool { return target == f.kind }
func (f *failure) Unwrap() error        { return f.cause }

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// redactURL drops any user info from an endpoint URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}
