// Command pulumi-resource-random serves Terraform's random provider to the Pulumi engine through the
// Terraform bridge, with the resource tokens, properties and secret flags of the pulumi_random SDK.
//
// No pulumi-random provider module is served where we build, so this is our own, small build of the same
// thing: the Terraform provider at the commit pulumi-random 4.21.1 uses, the bridge (go.mod says which), and the
// token rule that turns `random_password` into `random:index/randomPassword:RandomPassword`. The package
// schema is generated from the Terraform schema when the plugin starts (without the docs), instead of being
// shipped as a generated file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/terraform-providers/terraform-provider-random/shim"
)

// version is the pulumi_random SDK release this plugin stands in for; scripts/install-pulumi sets it with
// -ldflags from requirements.txt, because the engine asks for the plugin by the SDK's version.
var version = "0.0.0-dev"

func providerInfo() tfbridge.ProviderInfo {
	info := tfbridge.ProviderInfo{
		P:       pf.ShimProvider(shim.NewProvider()),
		Name:    "random",
		Version: version,
		Resources: map[string]*tfbridge.ResourceInfo{
			// random_bytes has no id attribute. pulumi-random uses the base64 value as the ID, and so do
			// we, so that state stays interchangeable with the released plugin. IDs are never encrypted:
			// keep secrets out of RandomBytes (our program does).
			"random_bytes": {ComputeID: bytesID},
		},
		// Generating the schema fills this in, as upstream's build does into bridge-metadata.json; the bridge
		// then serves from it.
		MetadataInfo:                tfbridge.NewProviderMetadata(nil),
		EnableAccurateBridgePreview: true,
		EnableRawStateDelta:         true,
	}
	info.MustComputeTokens(tokens.SingleModule("random_", "index",
		func(module, name string) (string, error) { return tokens.MakeStandard("random")(module, "Random"+name) }))
	return info
}

func bytesID(_ context.Context, state resource.PropertyMap) (resource.ID, error) {
	value, ok := state["base64"]
	if !ok {
		return "", errors.New("random_bytes state has no base64 property")
	}
	if value.IsSecret() {
		value = value.SecretValue().Element
	}
	if !value.IsString() {
		return "", errors.New("random_bytes base64 property is not a string")
	}
	return resource.ID(value.StringValue()), nil
}

func main() {
	info := providerInfo()
	quiet := diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never})
	generated, err := tfgen.GenerateSchemaWithOptions(tfgen.GenerateSchemaOptions{
		ProviderInfo: info, DiagnosticsSink: quiet, XInMemoryDocs: true,
	})
	if err != nil {
		cmdutil.ExitError("generating the random package schema: " + err.Error())
	}
	schema, err := json.Marshal(generated.PackageSpec)
	if err != nil {
		cmdutil.ExitError("encoding the random package schema: " + err.Error())
	}
	pf.Main(context.Background(), "random", info, pf.ProviderMetadata{PackageSchema: schema})
}
