// Wrapper for building pulumi-resource-random (see toolchain/pulumi/go.mod for why wrappers exist). Its main
// package and its terraform-provider-random shim are recreated at build time.
module airflow-platform/toolchain/random

go 1.26
