//! Recipes: named post-install scripts.

use super::Vmm;
use crate::error::Result;
use crate::id::RecipeId;
use crate::page::{Page, PageRequest};
use crate::recipe::{Recipe, RecipeSpec};

impl Vmm {
    /// Adds a recipe.
    pub async fn create_recipe(&self, spec: RecipeSpec) -> Result<Recipe> {
        let recipe = Recipe::from_spec(&spec, self.now())?;
        self.inner.store.create_recipe(&recipe).await?;
        Ok(recipe)
    }

    /// One recipe.
    pub async fn get_recipe(&self, id: RecipeId) -> Result<Recipe> {
        self.inner.store.get_recipe(id).await
    }

    /// Recipes, newest first.
    pub async fn list_recipes(&self, page: &PageRequest) -> Result<Page<Recipe>> {
        self.inner.store.list_recipes(page).await
    }

    /// Removes a recipe (VMs installed with it keep what it was).
    pub async fn delete_recipe(&self, id: RecipeId) -> Result<()> {
        self.inner.store.delete_recipe(id).await
    }
}
