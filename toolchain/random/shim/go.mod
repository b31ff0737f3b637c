// Terraform's random provider keeps its constructor in an internal package, which Go lets only modules under
// the provider's own path import. This one-function module lives under that path for that reason alone.
module github.com/terraform-providers/terraform-provider-random/shim

go 1.25

require (
	github.com/hashicorp/terraform-plugin-framework v1.19.0
	github.com/terraform-providers/terraform-provider-random v1.3.2-0.20260513075824-f8d869dc98d9
)
