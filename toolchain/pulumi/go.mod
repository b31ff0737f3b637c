// Wrapper for building the Pulumi CLI: `go install pkg@version` refuses modules whose go.mod has replace
// directives. scripts/install-pulumi builds a copy of this directory in its cache after setting the
// requirements from requirements.txt; `scripts/install-pulumi --update-lock` writes the result back here.
module airflow-platform/toolchain/pulumi

go 1.26

tool github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
