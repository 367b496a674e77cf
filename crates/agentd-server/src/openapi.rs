//! The OpenAPI 3.1 document. Paths come from the handlers' `#[utoipa::path]` attributes as the router
//! is built (utoipa-axum), so a route cannot exist without its documentation. The standard error
//! responses are added here once, from what each operation declares, rather than repeated per handler.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::problem::{Problem, PROBLEM_JSON};

/// The security scheme name that routes cite with their scope.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentd",
        description = "The agentd Agent OS: registry, runtime and control plane for AI agents. \
                       Authenticate with `Authorization: Bearer <api key>`; each operation lists the scope it needs.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "system", description = "Health, information, configuration and metrics"),
        (name = "keys", description = "API keys of the caller's tenant"),
        (name = "agents", description = "The agent registry: specs, versions, lifecycle and events"),
        (name = "users", description = "Users of the tenant with their roles, the tenant, and making tenants"),
        (name = "auth", description = "Logging in: magic links, OAuth, refresh, and agentd's JWT signing key"),
        (name = "audit", description = "The audit log: every change and every refused request, hash-chained per tenant"),
        (name = "identity", description = "Agents' Ed25519 identities: agent keys, rotation, signing and verification"),
        (name = "memories", description = "User memories: facts kept about a user across sessions, with topics and per-user figures"),
        (name = "knowledge", description = "The knowledge base: contents uploaded as text, files or URLs, chunked, embedded and searched by keyword, vector or both"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("agentd API key")
                    .description(Some(
                        "An agentd API key (`agentd_…`). Scopes are listed per operation.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Finishes the document once the routes' paths are in: adds the problem+json responses every
/// operation can give, according to what it declares (security, body, parameters).
pub fn add_standard_errors(openapi: &mut OpenApiDoc) {
    StandardErrors.modify(openapi);
}

struct StandardErrors;

impl StandardErrors {
    fn add(operation: &mut Operation, status: &str, description: &str) {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build();
        let response = ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, content)
            .build();
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert(response.into());
    }
}

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_path_params = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Path);
                let has_query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Query);
                if secured {
                    Self::add(operation, "401", "Missing, unknown or expired API key");
                    Self::add(
                        operation,
                        "403",
                        "The key lacks the scope this operation requires",
                    );
                }
                if operation.request_body.is_some() {
                    Self::add(operation, "400", "The body is not valid JSON");
                    Self::add(operation, "413", "The body exceeds the size limit");
                    Self::add(operation, "415", "The body is not JSON");
                }
                if operation.request_body.is_some() || has_path_params || has_query {
                    Self::add(
                        operation,
                        "422",
                        "A field has an invalid value; `field` names it",
                    );
                }
                if has_path_params {
                    Self::add(operation, "404", "No such resource in the caller's tenant");
                }
                Self::add(
                    operation,
                    "500",
                    "Internal error (details are in the server log)",
                );
            }
        }
    }
}
