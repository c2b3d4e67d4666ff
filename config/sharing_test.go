package config_test

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/nixcnb/nix-buildpack/config"
	"github.com/nixcnb/nix-buildpack/prootcmd"
)

func TestSharingDefaults(t *testing.T) {
	c, err := config.FromEnv(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.Enabled() || !c.BuildOnPush || c.Compression != "zstd" || c.Launcher != "auto" || c.SourceName != "git-export" {
		t.Errorf("defaults: S3 %v, build on push %t, compression %q, launcher %q, source name %q",
			c.S3.Enabled(), c.BuildOnPush, c.Compression, c.Launcher, c.SourceName)
	}
}

// The old buildpacks' names and the standard AWS variables fill the S3
// settings; the new names win.
func TestSharingAliases(t *testing.T) {
	c, err := config.FromEnv([]string{
		"NIX_S3_BUCKET=old-bucket", "NIX_S3_KEY=AKIAOLD", "NIX_S3_SECRET=old-secret", "NIX_APP_NAME=old-app",
		"NIX_BUILD_ON_PUSH=1", "NIX_EXTRA_BINARY_CACHE=http://hydra:3000 https://cachix.example",
		"AWS_DEFAULT_REGION=eu-west-1", "AWS_ENDPOINT_URL=http://127.0.0.1:7070", "BP_NIX_S3_PREFIX=/team/app/",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := config.S3{Bucket: "old-bucket", Prefix: "team/app/", Region: "eu-west-1", Endpoint: "http://127.0.0.1:7070",
		PathStyle: true, AccessKeyID: "AKIAOLD", SecretAccessKey: "old-secret"}
	if c.S3 != want {
		t.Errorf("S3 = %#v\nwant %#v", c.S3, want)
	}
	if c.AppName != "old-app" || !c.BuildOnPush || !reflect.DeepEqual(c.Substituters, []string{"http://hydra:3000", "https://cachix.example"}) {
		t.Errorf("app %q, build on push %t, substituters %v", c.AppName, c.BuildOnPush, c.Substituters)
	}
	if got := c.S3.URL(); got != "s3://old-bucket/team/app" {
		t.Errorf("URL() = %q", got)
	}

	c, err = config.FromEnv([]string{"NIX_S3_BUCKET=old", "BP_NIX_S3_BUCKET=new", "AWS_ACCESS_KEY_ID=A", "NIX_S3_KEY=B", "AWS_SECRET_ACCESS_KEY=S"})
	if err != nil {
		t.Fatal(err)
	}
	if c.S3.Bucket != "new" || c.S3.AccessKeyID != "A" || c.S3.PathStyle {
		t.Errorf("new names must win and AWS itself gets virtual-hosted style: %#v", c.S3)
	}
}

func TestSharingErrors(t *testing.T) {
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"BP_NIX_S3_BUCKET=b", "AWS_ACCESS_KEY_ID=A"}, "S3 credentials are incomplete: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{[]string{"BP_NIX_S3_BUCKET=b", "NIX_S3_SECRET=s"}, "set both AWS_ACCESS_KEY_ID and NIX_S3_SECRET"},
		{[]string{"NIX_BUILD_ON_PUSH=false"}, "NIX_BUILD_ON_PUSH=false restores the app's last build from S3: set BP_NIX_S3_BUCKET and BP_NIX_APP_NAME too"},
		{[]string{"BP_NIX_BUILD_ON_PUSH=false", "BP_NIX_S3_BUCKET=b"}, "set BP_NIX_S3_BUCKET and BP_NIX_APP_NAME too"},
		{[]string{"BP_NIX_S3_COMPRESSION=lz4"}, `BP_NIX_S3_COMPRESSION="lz4": use zstd, xz or none`},
		{[]string{"BP_NIX_SIGNING_KEY=not-a-key"}, "BP_NIX_SIGNING_KEY is not a Nix secret key"},
		{[]string{"BP_NIX_LAUNCHER=docker"}, `BP_NIX_LAUNCHER="docker": use auto, proot or relocate`},
		{[]string{"BP_NIX_S3_PATH_STYLE=sometimes"}, `BP_NIX_S3_PATH_STYLE="sometimes": use true or false`},
		{[]string{"NIXCNB_ONE_OFF=true"}, "the build command pushes the app to S3, and no bucket is set"},
		{[]string{"BP_NIX_APP_NAME=my app"}, `BP_NIX_APP_NAME="my app": use 1 to 100 letters, digits and - _ .`},
		{[]string{"NIX_APP_NAME=../../etc"}, `NIX_APP_NAME="../../etc": use 1 to 100 letters`},
		{[]string{"BP_NIX_S3_PREFIX=team/../other"}, `BP_NIX_S3_PREFIX="team/../other": use letters, digits and - _ . / only`},
		{[]string{"BP_NIX_S3_PREFIX=a b"}, `BP_NIX_S3_PREFIX="a b"`},
		{[]string{"AWS_ENDPOINT_URL_S3=127.0.0.1:7070"}, `AWS_ENDPOINT_URL_S3="127.0.0.1:7070": use an http:// or https:// URL`},
		{[]string{"AWS_ENDPOINT_URL=ftp://x"}, `AWS_ENDPOINT_URL="ftp://x": use an http:// or https:// URL`},
		{[]string{"BP_NIX_TRUSTED_PUBLIC_KEYS=" + keyA + " b-1:AAA"}, `BP_NIX_TRUSTED_PUBLIC_KEYS: "b-1:AAA" is not a Nix public key`},
		{[]string{"BP_NIX_STORE_CACHE=s3"}, "BP_NIX_STORE_CACHE=s3 substitutes the store from the S3 bucket: set BP_NIX_S3_BUCKET too"},
		{[]string{"BP_NIX_STORE_CACHE=disk"}, `BP_NIX_STORE_CACHE="disk": use layers or s3`},
		{[]string{"BP_NIX_MAX_LAYERS=0"}, `BP_NIX_MAX_LAYERS="0": use a whole number from 1 to 100`},
		{[]string{"BP_NIX_MAX_LAYERS=many"}, `BP_NIX_MAX_LAYERS="many"`},
		{[]string{"BP_NIX_SUBSTITUTERS=cache.example"}, `BP_NIX_SUBSTITUTERS: "cache.example" is not a binary cache URL`},
	}
	for _, c := range cases {
		_, err := config.FromEnv(c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FromEnv(%v) = %v, want an error containing %q", c.env, err, c.want)
		}
	}
}

// A secret never shows in an error message, nor when the bucket's settings
// are printed.
func TestSharingErrorsKeepSecrets(t *testing.T) {
	c, err := config.FromEnv([]string{"BP_NIX_S3_BUCKET=b", "AWS_ACCESS_KEY_ID=A", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-secret"})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, c.S3); strings.Contains(got, "wJalrXUtnFEMI-secret") {
			t.Errorf("%s of the bucket's settings shows the secret: %s", format, got)
		}
	}
	_, err = config.FromEnv([]string{"BP_NIX_S3_BUCKET=b", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-secret"})
	if err == nil || strings.Contains(err.Error(), "wJalrXUtnFEMI-secret") {
		t.Fatalf("error %v", err)
	}
	// A signing key one byte short of a real one.
	_, err = config.FromEnv([]string{"BP_NIX_SIGNING_KEY=cache-1:c2VjcmV0LXNpZ25pbmcta2V5LXNob3J0"})
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("error %v", err)
	}
}

// Public keys of 32 bytes, as Nix writes them.
const (
	keyA = "a-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyB = "b-1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
)

func TestSigningKeyIsParsed(t *testing.T) {
	sk, pk, err := signature.GenerateKeypair("cache-1", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.FromEnv([]string{"BP_NIX_SIGNING_KEY=" + sk.String(), "BP_NIX_TRUSTED_PUBLIC_KEYS=" + pk.String()})
	if err != nil {
		t.Fatal(err)
	}
	if c.SigningKey != sk.String() || !reflect.DeepEqual(c.TrustedPublicKeys, []string{pk.String()}) {
		t.Errorf("signing key or trusted keys not kept: %+v", c.TrustedPublicKeys)
	}
}

func TestLauncherAndHydraSettings(t *testing.T) {
	c, err := config.FromEnv([]string{"BP_NIX_LAUNCHER=Relocate", "BP_NIX_HYDRA_INPUT=my-project", "BP_NIX_SOURCE_NAME=src",
		"NIXCNB_PROOT=/layers/p/usr/bin/proot:/layers/p/usr/lib/x86_64-linux-gnu", "BP_NIX_TRUSTED_PUBLIC_KEYS=" + keyA + "  " + keyB})
	if err != nil {
		t.Fatal(err)
	}
	if c.Launcher != "relocate" || c.HydraInput != "my-project" || c.SourceName != "src" ||
		c.Proot != (prootcmd.Tool{Binary: "/layers/p/usr/bin/proot", LibDir: "/layers/p/usr/lib/x86_64-linux-gnu"}) ||
		!reflect.DeepEqual(c.TrustedPublicKeys, []string{keyA, keyB}) {
		t.Errorf("%+v", c)
	}
}

// The image's build command names a proot with its own C library, and a
// value it could not have written stops the build.
func TestProotOfTheImage(t *testing.T) {
	c, err := config.FromEnv([]string{"NIXCNB_PROOT=/layers/p/usr/bin/proot:/layers/p/lib:/layers/p/lib/ld-linux-aarch64.so.1:no-seccomp"})
	if err != nil {
		t.Fatal(err)
	}
	want := prootcmd.Tool{Binary: "/layers/p/usr/bin/proot", LibDir: "/layers/p/lib", Loader: "/layers/p/lib/ld-linux-aarch64.so.1", NoSeccomp: true}
	if c.Proot != want {
		t.Errorf("Proot = %+v, want %+v", c.Proot, want)
	}
	_, err = config.FromEnv([]string{"NIXCNB_PROOT=/p/proot:/p/lib:/p/ld.so:maybe"})
	if err == nil || !strings.Contains(err.Error(), "NIXCNB_PROOT") {
		t.Errorf("a malformed NIXCNB_PROOT gave %v, want an error naming it", err)
	}
}
