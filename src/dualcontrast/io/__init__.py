"""Readers and writers of the field's file formats: STAR (:mod:`.star`) and MRC (:mod:`.mrc`)."""
