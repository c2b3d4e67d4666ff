package config_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paketo-buildpacks/packit/v2/servicebindings"

	"github.com/nixcnb/nix-buildpack/config"
)

// platformWithBindings makes a platform folder holding bindings (name →
// entry → content; "type" is the binding's type) and returns it. The
// resolver looks elsewhere when SERVICE_BINDING_ROOT, CNB_BINDINGS or
// VCAP_SERVICES is set, so the test unsets them.
func platformWithBindings(t *testing.T, bindings map[string]map[string]string) string {
	t.Helper()
	for _, name := range []string{"SERVICE_BINDING_ROOT", "CNB_BINDINGS", "VCAP_SERVICES"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	platform := t.TempDir()
	for name, entries := range bindings {
		dir := filepath.Join(platform, "bindings", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for entry, content := range entries {
			if err := os.WriteFile(filepath.Join(dir, entry), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return platform
}

// asSecretVolume rewrites the binding folder dir as the kubelet projects a
// Kubernetes Secret into a pod (kpack mounts each of an Image's
// spec.build.services so): the files in a hidden timestamped folder,
// ..data a symlink to it, and each entry a symlink to ..data/ENTRY.
func asSecretVolume(t *testing.T, dir string) {
	t.Helper()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	stamp := "..2026_06_01_12_00_00.123456789"
	if err := os.Mkdir(filepath.Join(dir, stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Rename(filepath.Join(dir, f.Name()), filepath.Join(dir, stamp, f.Name())); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", f.Name()), filepath.Join(dir, f.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(stamp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func secretKey(t *testing.T, name string) string {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return name + ":" + base64.StdEncoding.EncodeToString(sk)
}

func TestS3BindingWinsOverTheEnvironment(t *testing.T) {
	platform := platformWithBindings(t, map[string]map[string]string{
		"nix-cache": {
			"type":              "s3",
			"access-key-id":     "AKIABOUND\n",
			"secret-access-key": "bound-secret\n",
			"region":            "eu-west-1",
			"endpoint":          "https://minio.example:9000",
			"bucket":            "bound-bucket",
		},
	})
	c, err := config.Load([]string{
		"CNB_PLATFORM_DIR=" + platform,
		"BP_NIX_S3_BUCKET=env-bucket", "AWS_ACCESS_KEY_ID=AKIAENV", "AWS_SECRET_ACCESS_KEY=env-secret",
		"AWS_SESSION_TOKEN=env-token", "BP_NIX_S3_PREFIX=team",
	}, servicebindings.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	want := config.S3{Bucket: "bound-bucket", Prefix: "team/", Region: "eu-west-1", Endpoint: "https://minio.example:9000",
		PathStyle: true, AccessKeyID: "AKIABOUND", SecretAccessKey: "bound-secret"}
	if c.S3 != want {
		t.Errorf("S3 settings:\n got %#v\nwant %#v", c.S3, want)
	}
	if c.S3.SessionToken != "" {
		t.Errorf("the environment's session token was kept beside the binding's keys")
	}
	if len(c.Bindings) != 1 {
		t.Fatalf("Bindings = %q, want one line", c.Bindings)
	}
	line := c.Bindings[0]
	for _, w := range []string{"nix-cache", "type s3", "access-key-id", "secret-access-key", "region", "endpoint", "bucket",
		"in place of", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "BP_NIX_S3_BUCKET"} {
		if !strings.Contains(line, w) {
			t.Errorf("the log line %q does not mention %q", line, w)
		}
	}
	for _, secret := range []string{"AKIABOUND", "bound-secret", "bound-bucket", "eu-west-1", "minio.example"} {
		if strings.Contains(line, secret) {
			t.Errorf("the log line %q shows the value %q", line, secret)
		}
	}
}

func TestS3BindingGivesCredentialsOnly(t *testing.T) {
	platform := platformWithBindings(t, map[string]map[string]string{
		"creds": {"type": "S3", "access-key-id": "AKIABOUND", "secret-access-key": "bound-secret"},
	})
	c, err := config.Load([]string{"CNB_PLATFORM_DIR=" + platform, "BP_NIX_S3_BUCKET=env-bucket"}, servicebindings.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.Bucket != "env-bucket" || c.S3.AccessKeyID != "AKIABOUND" || c.S3.SecretAccessKey != "bound-secret" || c.S3.PathStyle {
		t.Errorf("S3 settings: %#v", c.S3)
	}
	if len(c.Bindings) != 1 || strings.Contains(c.Bindings[0], "in place of") {
		t.Errorf("Bindings = %q: want one line that replaces nothing", c.Bindings)
	}
}

func TestBindingsFromServiceBindingRoot(t *testing.T) {
	root := filepath.Join(platformWithBindings(t, map[string]map[string]string{
		"creds": {"type": "s3", "access-key-id": "AKIAROOT", "secret-access-key": "root-secret"},
	}), "bindings")
	t.Setenv("SERVICE_BINDING_ROOT", root)
	c, err := config.Load([]string{"CNB_PLATFORM_DIR=" + t.TempDir()}, servicebindings.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.AccessKeyID != "AKIAROOT" {
		t.Errorf("the binding under SERVICE_BINDING_ROOT was not read: %#v", c.S3)
	}
}

func TestSigningKeyBinding(t *testing.T) {
	key := secretKey(t, "cache-1")
	for name, tc := range map[string]struct {
		entries map[string]string
		// secretVolume lays the binding out as Kubernetes mounts a Secret.
		secretVolume bool
	}{
		"in its key entry":                         {map[string]string{"type": "nix-signing-key", "key": key + "\n", "public": "ignored"}, false},
		"in its only entry":                        {map[string]string{"type": "nix-signing-key", "cache-1.sec": key}, false},
		"in its only entry, from a Secret (kpack)": {map[string]string{"type": "nix-signing-key", "cache-1.sec": key}, true},
		"in its key entry, from a Secret (kpack)":  {map[string]string{"type": "nix-signing-key", "key": key, "public": "ignored"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			platform := platformWithBindings(t, map[string]map[string]string{"signing": tc.entries})
			if tc.secretVolume {
				asSecretVolume(t, filepath.Join(platform, "bindings", "signing"))
			}
			c, err := config.Load([]string{"CNB_PLATFORM_DIR=" + platform, "BP_NIX_SIGNING_KEY=" + secretKey(t, "env-1")},
				servicebindings.NewResolver())
			if err != nil {
				t.Fatal(err)
			}
			if c.SigningKey != key {
				t.Errorf("the signing key is not the binding's")
			}
			if len(c.Bindings) != 1 || !strings.Contains(c.Bindings[0], "signing (type nix-signing-key)") ||
				!strings.Contains(c.Bindings[0], "in place of BP_NIX_SIGNING_KEY") || strings.Contains(c.Bindings[0], key) {
				t.Errorf("Bindings = %q", c.Bindings)
			}
		})
	}
}

func TestBindingErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bindings map[string]map[string]string
		env      []string
		want     []string
	}{
		{
			name:     "no secret access key",
			bindings: map[string]map[string]string{"creds": {"type": "s3", "access-key-id": "AKIA"}},
			want:     []string{"creds", "type s3", "secret-access-key", "add the file"},
		},
		{
			name: "an endpoint that is not a URL",
			bindings: map[string]map[string]string{"creds": {"type": "s3", "access-key-id": "AKIA", "secret-access-key": "s3cr3t-value",
				"endpoint": "minio:9000"}},
			want: []string{"the endpoint entry of the service binding creds", "http:// or https://"},
		},
		{
			name:     "a signing key that is not one",
			bindings: map[string]map[string]string{"signing": {"type": "nix-signing-key", "key": "cache-1:bm90LWEta2V5"}},
			want:     []string{"the key entry of the service binding signing", "is not a Nix secret key"},
		},
		{
			name:     "a signing key binding with several entries, none named key",
			bindings: map[string]map[string]string{"signing": {"type": "nix-signing-key", "a": "x", "b": "y"}},
			want:     []string{"signing", "no key entry"},
		},
		{
			name:     "an empty entry",
			bindings: map[string]map[string]string{"creds": {"type": "s3", "access-key-id": "\n", "secret-access-key": "s3cr3t-value"}},
			want:     []string{"empty access-key-id entry"},
		},
		{
			name: "two s3 bindings",
			bindings: map[string]map[string]string{
				"one": {"type": "s3", "access-key-id": "A", "secret-access-key": "s3cr3t-value"},
				"two": {"type": "s3", "access-key-id": "B", "secret-access-key": "s3cr3t-value"},
			},
			want: []string{"2 service bindings of type s3", "one", "two", "keep one"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			platform := platformWithBindings(t, tc.bindings)
			_, err := config.Load(append([]string{"CNB_PLATFORM_DIR=" + platform}, tc.env...), servicebindings.NewResolver())
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, secret := range []string{"s3cr3t-value", "bm90LWEta2V5"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
		})
	}
}

// A bucket named by a binding only counts as set for the settings that
// need one.
func TestBindingBucketSatisfiesTheStoreCache(t *testing.T) {
	platform := platformWithBindings(t, map[string]map[string]string{
		"creds": {"type": "s3", "access-key-id": "A", "secret-access-key": "s", "bucket": "bound-bucket"},
	})
	c, err := config.Load([]string{"CNB_PLATFORM_DIR=" + platform, "BP_NIX_STORE_CACHE=s3"}, servicebindings.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	if c.StoreCache != config.StoreCacheS3 || c.S3.Bucket != "bound-bucket" {
		t.Errorf("store cache %q, bucket %q", c.StoreCache, c.S3.Bucket)
	}
}

func TestNoBindings(t *testing.T) {
	platform := platformWithBindings(t, map[string]map[string]string{
		"other": {"type": "maven", "settings.xml": "<settings/>"},
	})
	c, err := config.Load([]string{"CNB_PLATFORM_DIR=" + platform, "AWS_ACCESS_KEY_ID=A", "AWS_SECRET_ACCESS_KEY=s"}, servicebindings.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	if c.Bindings != nil || c.S3.AccessKeyID != "A" {
		t.Errorf("Bindings %q, access key %q: want none, and the environment's", c.Bindings, c.S3.AccessKeyID)
	}
}
