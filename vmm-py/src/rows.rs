//! `vmm._vmm.Row`: one item of a listed page, kept as the Rust value it was read as and
//! shown to Python as a read-only mapping of the HTTP API's JSON shape.
//!
//! Listing 10,000 VMs as dicts spent most of its time making Python strings, dicts and
//! lists (and in the collector those containers wake). A row is one small object; a field is
//! made into Python objects when it is read (`row["name"]`), by serde: the row's value is
//! serialized into [`Pick`], which keeps only the field asked for, so a row has exactly the
//! keys and values the API's JSON has (a field serde skips is not there).

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};

/// A value a row can hold: anything serde serializes as a struct.
type Value = dyn erased_serde::Serialize + Send + Sync;

/// One listed item: a read-only mapping of the API's JSON shape, converted field by field.
#[pyclass(module = "vmm._vmm", frozen, mapping)]
pub struct Row(Box<Value>);

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row").finish_non_exhaustive()
    }
}

impl Row {
    /// A row of `value`, which must serialize as a struct.
    pub fn new<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        Self(Box::new(value))
    }

    fn pick(&self, py: Python<'_>, key: &str) -> PyResult<Option<Py<PyAny>>> {
        let mut pick = Pick { py, key, found: None };
        erased_serde::serialize(&*self.0, &mut pick).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(pick.found)
    }

    fn names(&self) -> PyResult<Vec<&'static str>> {
        let mut keys = Keys(Vec::new());
        erased_serde::serialize(&*self.0, &mut keys).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(keys.0)
    }
}

#[pymethods]
impl Row {
    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        self.pick(py, key)?.ok_or_else(|| PyKeyError::new_err(key.to_owned()))
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(key) = key.cast::<PyString>() else { return Ok(false) };
        Ok(self.names()?.contains(&key.to_str()?))
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.names()?.len())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self.names()?)?.try_iter()?.into_any())
    }

    /// The field names, in the API's order.
    fn keys(&self) -> PyResult<Vec<&'static str>> {
        self.names()
    }

    /// The value of `key`, or `default` when the row has no such field.
    #[pyo3(signature = (key, default = None))]
    fn get(&self, py: Python<'_>, key: &str, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        Ok(self.pick(py, key)?.or(default).unwrap_or_else(|| py.None()))
    }

    /// The whole row as a new dict (nested values as dicts and lists).
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(pythonize::pythonize(py, &*self.0)?.unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Row({})", self.to_dict(py)?.bind(py).repr()?))
    }
}

/// What went wrong picking a field: the value is not a struct, or pythonize failed.
#[derive(Debug)]
struct PickError(String);

impl std::fmt::Display for PickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PickError {}

impl ser::Error for PickError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// A serializer that takes a struct and keeps the one field named `key`, as Python objects.
struct Pick<'py, 'k> {
    py: Python<'py>,
    key: &'k str,
    found: Option<Py<PyAny>>,
}

/// A serializer that takes a struct and keeps its field names.
struct Keys(Vec<&'static str>);

/// Every kind of value but a struct is refused: a row holds records.
macro_rules! only_structs {
    () => {
        type Ok = ();
        type Error = PickError;
        type SerializeSeq = Impossible<(), PickError>;
        type SerializeTuple = Impossible<(), PickError>;
        type SerializeTupleStruct = Impossible<(), PickError>;
        type SerializeTupleVariant = Impossible<(), PickError>;
        type SerializeMap = Impossible<(), PickError>;
        type SerializeStructVariant = Impossible<(), PickError>;

        fn serialize_bool(self, _: bool) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_i8(self, _: i8) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_i16(self, _: i16) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_i32(self, _: i32) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_i64(self, _: i64) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_u8(self, _: u8) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_u16(self, _: u16) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_u32(self, _: u32) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_u64(self, _: u64) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_f32(self, _: f32) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_f64(self, _: f64) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_char(self, _: char) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_str(self, _: &str) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_none(self) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_unit(self) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), PickError> {
            Err(not_a_struct())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, PickError> {
            Err(not_a_struct())
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, PickError> {
            Err(not_a_struct())
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, PickError> {
            Err(not_a_struct())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, PickError> {
            Err(not_a_struct())
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, PickError> {
            Err(not_a_struct())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, PickError> {
            Err(not_a_struct())
        }
    };
}

fn not_a_struct() -> PickError {
    PickError("a row holds a struct".into())
}

impl<'a, 'py, 'k> Serializer for &'a mut Pick<'py, 'k> {
    type SerializeStruct = Self;
    only_structs!();

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, PickError> {
        Ok(self)
    }
}

impl SerializeStruct for &mut Pick<'_, '_> {
    type Ok = ();
    type Error = PickError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), PickError> {
        if self.found.is_none() && key == self.key {
            let made = pythonize::pythonize(self.py, value).map_err(|e| PickError(e.to_string()))?;
            self.found = Some(made.unbind());
        }
        Ok(())
    }

    fn end(self) -> Result<(), PickError> {
        Ok(())
    }
}

impl Serializer for &mut Keys {
    type SerializeStruct = Self;
    only_structs!();

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, PickError> {
        Ok(self)
    }
}

impl SerializeStruct for &mut Keys {
    type Ok = ();
    type Error = PickError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, _: &T) -> Result<(), PickError> {
        self.0.push(key);
        Ok(())
    }

    fn end(self) -> Result<(), PickError> {
        Ok(())
    }
}
