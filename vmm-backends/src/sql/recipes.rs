//! [`RecipeStore`] on SQL.

use async_trait::async_trait;
use vmm_core::{Error, Page, PageRequest, Recipe, RecipeId, RecipeStore, Result};

use super::{from_json, is_unique_violation, signed, to_json, Columns, SqlStore};

#[async_trait]
impl RecipeStore for SqlStore {
    async fn create_recipe(&self, recipe: &Recipe) -> Result<()> {
        sqlx::query("INSERT INTO recipes (id, name, recipe) VALUES ($1, $2, $3)")
            .bind(recipe.id.to_string())
            .bind(&recipe.name)
            .bind(to_json(recipe)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("a recipe named {:?} exists", recipe.name))
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_recipe(&self, id: RecipeId) -> Result<Recipe> {
        let query = sqlx::query("SELECT recipe FROM recipes WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::RecipeNotFound { id }).await?;
        from_json(&row.text("recipe")?)
    }

    async fn list_recipes(&self, page: &PageRequest) -> Result<Page<Recipe>> {
        let limit = page.limit()?;
        let before: Option<RecipeId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        let rows = match before {
            Some(b) => {
                sqlx::query("SELECT recipe FROM recipes WHERE id < $1 ORDER BY id DESC LIMIT $2")
                    .bind(b.to_string())
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                sqlx::query("SELECT recipe FROM recipes ORDER BY id DESC LIMIT $1")
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("recipe")?)).collect::<Result<Vec<Recipe>>>()?;
        Ok(Page::from_overfetch(items, limit, |r| r.id.to_string()))
    }

    async fn delete_recipe(&self, id: RecipeId) -> Result<()> {
        let done = sqlx::query("DELETE FROM recipes WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::RecipeNotFound { id });
        }
        Ok(())
    }
}
