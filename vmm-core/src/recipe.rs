//! Recipes: named post-install scripts, each for the OS families it was written for, run by
//! cloud-init on a VM's first boot (and again after a reinstall).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::RecipeId;
use crate::image::{validate_family, Image};

/// Largest recipe script accepted, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;

/// What a user gives to add a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecipeSpec {
    /// Unique display name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: String,
    /// The OS families (`debian`, `ubuntu`…) it may run on.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 32))]
    pub os_families: Vec<String>,
    /// The script, run by `sh` as root.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 65536))]
    pub script: String,
}

/// A recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recipe {
    /// The id.
    pub id: RecipeId,
    /// Unique display name.
    pub name: String,
    /// The OS families it may run on.
    pub os_families: Vec<String>,
    /// The script.
    pub script: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl Recipe {
    /// Checks a spec and makes the recipe.
    pub fn from_spec(spec: &RecipeSpec, now: DateTime<Utc>) -> Result<Self> {
        crate::names::check_name(&spec.name)?;
        let name = spec.name.as_str();
        if spec.os_families.is_empty() || spec.os_families.len() > 32 {
            return Err(Error::invalid("os_families", "must name 1 to 32 families"));
        }
        for family in &spec.os_families {
            validate_family(family).map_err(|reason| Error::invalid("os_families", reason))?;
        }
        if spec.script.trim().is_empty() || spec.script.len() > MAX_SCRIPT_BYTES {
            return Err(Error::invalid(
                "script",
                format!("must be 1 byte to {} KiB", MAX_SCRIPT_BYTES / 1024),
            ));
        }
        if spec.script.contains('\0') {
            return Err(Error::invalid("script", "must not contain NUL bytes"));
        }
        Ok(Self {
            id: RecipeId::new(),
            name: name.to_owned(),
            os_families: spec.os_families.clone(),
            script: spec.script.clone(),
            created_at: now,
        })
    }

    /// Checks that the recipe may run on `image`'s OS.
    pub fn check_image(&self, image: &Image) -> Result<()> {
        if self.os_families.contains(&image.os.family) {
            Ok(())
        } else {
            Err(Error::invalid(
                "recipe_ids",
                format!(
                    "recipe {} is for {}, not {}",
                    self.name,
                    self.os_families.join(", "),
                    image.os.family
                ),
            ))
        }
    }
}
