// Wrapper for building the Python language host (see toolchain/pulumi/go.mod for why wrappers exist).
module airflow-platform/toolchain/language-python

go 1.26

tool github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
