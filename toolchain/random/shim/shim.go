// Package shim hands the Terraform random provider to the bridge (see go.mod for why it exists).
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"

	random "github.com/terraform-providers/terraform-provider-random/internal/provider"
)

// NewProvider returns the Terraform random provider, built on the plugin framework.
func NewProvider() provider.Provider { return random.New() }
