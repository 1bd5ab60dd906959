//! Recipes: scripts run at a guest's first boot, for the OS families they name.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Page, Recipe, RecipeId, RecipeSpec};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_recipe, list_recipes))
        .routes(routes!(get_recipe, delete_recipe))
}

/// Add a recipe.
#[utoipa::path(post, path = "/api/v1/recipes", tag = "recipes",
    request_body(content = RecipeSpec, example = json!({"name": "nginx", "os_families": ["debian", "ubuntu"], "script": "#!/bin/sh\napt-get install -y nginx\n"})),
    responses((status = 201, body = Recipe), Problems))]
async fn create_recipe(State(s): State<AppState>, Json(spec): Json<RecipeSpec>) -> ApiResult<Response> {
    let recipe = s.vmm.create_recipe(spec).await?;
    Ok(created(format!("/api/v1/recipes/{}", recipe.id), recipe))
}

/// Recipes, newest first.
#[utoipa::path(get, path = "/api/v1/recipes", tag = "recipes", params(PageQuery), responses((status = 200, body = Page<Recipe>), Problems))]
async fn list_recipes(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Paged<Recipe>> {
    Ok(Paged(s.vmm.list_recipes(&q.page()).await?))
}

/// One recipe.
#[utoipa::path(get, path = "/api/v1/recipes/{id}", tag = "recipes", params(("id" = RecipeId, Path)),
    responses((status = 200, body = Recipe), Problems))]
async fn get_recipe(State(s): State<AppState>, Path(id): Path<RecipeId>) -> ApiResult<Json<Recipe>> {
    Ok(Json(s.vmm.get_recipe(id).await?))
}

/// Delete a recipe (VMs installed with it keep what it did).
#[utoipa::path(delete, path = "/api/v1/recipes/{id}", tag = "recipes", params(("id" = RecipeId, Path)),
    responses((status = 204), Problems))]
async fn delete_recipe(State(s): State<AppState>, Path(id): Path<RecipeId>) -> ApiResult<StatusCode> {
    s.vmm.delete_recipe(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
