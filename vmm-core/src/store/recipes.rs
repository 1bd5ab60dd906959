//! The recipes area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::RecipeId;
use crate::page::{Page, PageRequest};
use crate::recipe::Recipe;

/// Recipes.
#[async_trait]
pub trait RecipeStore: Send + Sync {
    /// Adds a recipe. A duplicate name is a conflict.
    async fn create_recipe(&self, recipe: &Recipe) -> Result<()>;
    /// One recipe.
    async fn get_recipe(&self, id: RecipeId) -> Result<Recipe>;
    /// Recipes, newest first.
    async fn list_recipes(&self, page: &PageRequest) -> Result<Page<Recipe>>;
    /// Removes a recipe.
    async fn delete_recipe(&self, id: RecipeId) -> Result<()>;
}
