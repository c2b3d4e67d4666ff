// Package s3objects keeps a binary cache's objects in an S3 bucket (AWS or
// any S3-compatible server): binarycache.Objects over the AWS SDK, with
// uploads of large NARs in parts, several at a time, and errors that say
// what to fix. It is the only package that speaks S3.
package s3objects

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/nixcnb/nix-buildpack/binarycache"

	nixconfig "github.com/nixcnb/nix-buildpack/config"
)

// DefaultPartSize is the size above which Objects uploads in parts, and
// the size of each part.
const DefaultPartSize = 64 << 20

// minPartSize is S3's smallest allowed part (all but the last).
const minPartSize = 5 << 20

// maxParts is the most parts S3 takes for one object.
const maxParts = 10000

// partsAtOnce is how many parts of one upload are sent at a time. Each is
// read from the body where it lies, not copied into memory, so a part in
// flight costs a connection, not a part's worth of memory; binarycache
// pushes up to 8 NARs at a time, so up to 32 parts go at once.
const partsAtOnce = 4

// abortTimeout bounds the abort of a failed upload in parts.
const abortTimeout = time.Minute

// Config says which bucket holds the cache and how to reach it: the
// build's S3 settings (config.S3), and how big an upload's parts are.
//
//   - Prefix is put before every key, e.g. "team/app/"; a missing trailing
//     slash is added.
//   - Region defaults to the SDK's (AWS_REGION, profiles), else us-east-1.
//   - Endpoint is the S3 endpoint URL for S3-compatible servers (MinIO, R2,
//     versitygw, …); empty means AWS. A URL without a scheme gets https://.
//   - PathStyle addresses the bucket as ENDPOINT/BUCKET/KEY instead of
//     BUCKET.ENDPOINT/KEY; most S3-compatible servers need it.
//   - AccessKeyID, SecretAccessKey and SessionToken are static credentials.
//     When AccessKeyID is empty the SDK's default chain is used (AWS_* env
//     vars, shared profiles, web identity, container and instance roles).
type Config struct {
	nixconfig.S3
	// PartSize is the size above which uploads go in parts of this size
	// (default DefaultPartSize, at least 5 MiB).
	PartSize int64
}

// String describes the configuration without its secrets.
func (c Config) String() string {
	creds := "default credential chain"
	if c.AccessKeyID != "" {
		creds = "access key " + c.AccessKeyID + " (secret redacted)"
	}
	return fmt.Sprintf("s3://%s/%s (region %q, endpoint %q, path-style %t, %s)",
		c.Bucket, c.Prefix, c.Region, redactURL(c.Endpoint), c.PathStyle, creds)
}

// GoString keeps %#v from printing the secret too.
func (c Config) GoString() string { return "s3objects.Config{" + c.String() + "}" }

// retryAttempts is how many times a request is tried. S3 answers 503
// SlowDown (and now and then 500) to a busy prefix; a build pushing
// hundreds of paths, or two builds pushing at once, meets that more than
// the SDK's default of 3 attempts rides out.
const retryAttempts = 10

// newRetryer retries what the SDK deems retryable (throttling, 5xx, a
// connection reset) with its jittered exponential backoff, up to
// retryAttempts, and without the SDK's client-side retry quota, which
// would stop a long push after a burst of throttling. A refused connection
// is not retried: nothing listens at the endpoint, and saying so at once
// beats waiting out the backoff.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = retryAttempts
		o.RateLimiter = ratelimit.None
		o.Retryables = append([]retry.IsErrorRetryable{refusedIsFinal}, o.Retryables...)
	})
}

// refusedIsFinal says a refused connection is not worth retrying, and
// leaves every other error to the SDK's rules.
var refusedIsFinal = retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
})

// Objects keeps a binary cache in an S3 bucket.
type Objects struct {
	client   *s3.Client
	bucket   string
	prefix   string
	endpoint string
	partSize int64
}

var _ binarycache.Objects = (*Objects)(nil)

// New makes an S3 client for cfg. It sends no request; the first
// operation reports wrong credentials, a missing bucket or an unreachable
// endpoint (see ErrCredentials, ErrNoSuchBucket, ErrUnreachable).
func New(ctx context.Context, cfg Config) (*Objects, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("no S3 bucket given")
	}
	if strings.ContainsAny(cfg.Bucket, "/ ") {
		return nil, fmt.Errorf("S3 bucket name %q is not valid: give the bucket alone, and the folder as the prefix", cfg.Bucket)
	}
	if cfg.AccessKeyID != "" && cfg.SecretAccessKey == "" {
		return nil, fmt.Errorf("an S3 access key ID (%s) was given without its secret access key", cfg.AccessKeyID)
	}
	endpoint := cfg.Endpoint
	if endpoint != "" {
		if !strings.Contains(endpoint, "://") {
			endpoint = "https://" + endpoint
		}
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("S3 endpoint %q is not a URL", redactURL(cfg.Endpoint))
		}
	}
	opts := []func(*config.LoadOptions) error{
		config.WithDefaultRegion("us-east-1"),
		// Ask for checksums only where S3 requires them: many S3-compatible
		// servers reject the SDK's default trailing CRC checksums.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRetryer(func() aws.Retryer { return newRetryer() }),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < minPartSize {
		partSize = minPartSize
	}
	if endpoint == "" {
		endpoint = "AWS S3 (region " + awsCfg.Region + ")"
	}
	return &Objects{
		client:   client,
		bucket:   cfg.Bucket,
		prefix:   normalizePrefix(cfg.Prefix),
		endpoint: redactURL(endpoint),
		partSize: partSize,
	}, nil
}

func normalizePrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// URL returns s3://bucket/prefix/key.
func (s *Objects) URL(key string) string {
	return "s3://" + s.bucket + "/" + s.prefix + key
}

func (s *Objects) fullKey(key string) (string, error) {
	if err := binarycache.CheckKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// Get downloads an object.
func (s *Objects) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.fullKey(key)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return nil, s.explain("reading", key, err)
	}
	return out.Body, nil
}

// Exists sends a HEAD request for an object.
func (s *Objects) Exists(ctx context.Context, key string) (bool, error) {
	k, err := s.fullKey(key)
	if err != nil {
		return false, err
	}
	_, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		err = s.explain("checking", key, err)
		if errors.Is(err, binarycache.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// Put uploads an object, in parts when it is larger than the part size. S3
// makes an object visible only once its upload is complete.
func (s *Objects) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	k, err := s.fullKey(key)
	if err != nil {
		return err
	}
	if size > s.partSize {
		return s.putMultipart(ctx, key, k, body, size)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &k,
		Body:          body,
		ContentLength: aws.Int64(size),
		ContentType:   aws.String(binarycache.ContentType(key)),
	})
	if err != nil {
		return s.explain("writing", key, err)
	}
	return nil
}

// putMultipart uploads body in parts, partsAtOnce at a time, and completes
// the upload only once every part is in. On a failure it aborts the
// upload, so that S3 drops the parts it has.
func (s *Objects) putMultipart(ctx context.Context, key, k string, body io.ReadSeeker, size int64) error {
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:      &s.bucket,
		Key:         &k,
		ContentType: aws.String(binarycache.ContentType(key)),
	})
	if err != nil {
		return s.explain("starting the upload of", key, err)
	}
	parts, err := s.putParts(ctx, key, k, created.UploadId, readerAt(body), size)
	if err != nil {
		return s.abort(ctx, k, created.UploadId, err)
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &k,
		UploadId:        created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return s.abort(ctx, k, created.UploadId, s.explain("completing the upload of", key, err))
	}
	return nil
}

// putParts sends the parts of an upload, partsAtOnce at a time, each read
// from body at its offset. The first part that fails stops new ones from
// starting; those on their way are let finish, so that S3 is not still
// writing a part when the upload is aborted (S3 may keep a part it was
// writing during the abort).
func (s *Objects) putParts(ctx context.Context, key, k string, uploadID *string, body io.ReaderAt, size int64) ([]types.CompletedPart, error) {
	partSize := max(s.partSize, (size+maxParts-1)/maxParts)
	parts := make([]types.CompletedPart, (size+partSize-1)/partSize)
	var g errgroup.Group
	g.SetLimit(partsAtOnce)
	var failed atomic.Bool
	for i := range parts {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		n := int32(i + 1)
		offset := int64(i) * partSize
		length := min(partSize, size-offset)
		g.Go(func() error {
			out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket:        &s.bucket,
				Key:           &k,
				UploadId:      uploadID,
				PartNumber:    aws.Int32(n),
				Body:          io.NewSectionReader(body, offset, length),
				ContentLength: aws.Int64(length),
			})
			if err != nil {
				failed.Store(true)
				return s.explain(fmt.Sprintf("writing part %d of", n), key, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", s.URL(key), err)
	}
	return parts, nil
}

// abort gives up an upload after cause, so that S3 drops its parts. It
// runs on a context of its own: the upload's may be the one cancelled
// (then a part S3 was still writing may outlive the abort, as S3's
// documentation warns). An abort that fails too is said after cause.
func (s *Objects) abort(ctx context.Context, k string, uploadID *string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &k, UploadId: uploadID})
	if err != nil {
		return fmt.Errorf("%w; aborting the upload failed too, so its parts stay in the bucket, out of sight, "+
			"until a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them: %v", cause, err)
	}
	return cause
}

// readerAt reads body at any offset: directly where body can, else by
// seeking it, one read at a time, so that parts sent at once share it.
func readerAt(body io.ReadSeeker) io.ReaderAt {
	if r, ok := body.(io.ReaderAt); ok {
		return r
	}
	return &seekingReaderAt{body: body}
}

type seekingReaderAt struct {
	mu   sync.Mutex
	body io.ReadSeeker
}

func (r *seekingReaderAt) ReadAt(p []byte, offset int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.body.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(r.body, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// List pages through ListObjectsV2.
func (s *Objects) List(ctx context.Context, prefix string) ([]binarycache.ObjectInfo, error) {
	full := s.prefix + prefix
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &full})
	var out []binarycache.ObjectInfo
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.explain("listing", prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, binarycache.ObjectInfo{
				Key:  strings.TrimPrefix(aws.ToString(o.Key), s.prefix),
				Size: aws.ToInt64(o.Size),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}
