//! [`RecipeStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::id::RecipeId;
use crate::page::{Page, PageRequest};
use crate::recipe::Recipe;
use crate::store::RecipeStore;

#[async_trait]
impl RecipeStore for InMemoryStore {
    async fn create_recipe(&self, recipe: &Recipe) -> Result<()> {
        let mut s = self.state();
        if s.recipes.contains_key(&recipe.id) || s.recipes.values().any(|r| r.name == recipe.name) {
            return Err(Error::conflict(format!("a recipe named {:?} exists", recipe.name)));
        }
        s.recipes.insert(recipe.id, recipe.clone());
        Ok(())
    }

    async fn get_recipe(&self, id: RecipeId) -> Result<Recipe> {
        self.state().recipes.get(&id).cloned().ok_or(Error::RecipeNotFound { id })
    }

    async fn list_recipes(&self, page: &PageRequest) -> Result<Page<Recipe>> {
        let limit = page.limit()?;
        let before: Option<RecipeId> = page.cursor()?;
        let s = self.state();
        let items = match before {
            Some(b) => s.recipes.range(..b),
            None => s.recipes.range(..),
        };
        let items = items.rev().take(limit + 1).map(|(_, r)| r.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |r: &Recipe| r.id.to_string()))
    }

    async fn delete_recipe(&self, id: RecipeId) -> Result<()> {
        self.state().recipes.remove(&id).map(drop).ok_or(Error::RecipeNotFound { id })
    }
}
