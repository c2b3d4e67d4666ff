module github.com/nixcnb/nix-buildpack

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/paketo-buildpacks/packit/v2 v2.25.7
)

require (
	github.com/Masterminds/semver/v3 v3.5.0 // indirect
	github.com/gabriel-vasile/mimetype v1.4.15 // indirect
	github.com/pelletier/go-toml v1.9.5 // indirect
	github.com/ulikunitz/xz v0.5.16 // indirect
)
