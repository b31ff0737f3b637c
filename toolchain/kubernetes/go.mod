// Wrapper for building pulumi-resource-kubernetes (see toolchain/pulumi/go.mod for why wrappers exist). Its
// main package is copied from the provider module at build time, with the schema files it embeds.
module airflow-platform/toolchain/kubernetes

go 1.26
