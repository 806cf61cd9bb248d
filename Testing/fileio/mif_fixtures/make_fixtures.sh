#!/bin/sh
# Remakes the MRtrix fixtures of Testing/fileio/test_mif.py with MRtrix3's own tools (Debian's mrtrix3 3.0.3) from
# this project's phantom; run in this folder with the project's Python on PATH.
set -e
python -c "
from ImageQualityTransferLib.dmri.phantom import make_phantom
from ImageQualityTransferLib.fileio import save_dwi
save_dwi(make_phantom(shape=(8, 8, 8), voxel_mm=4.0, n_dirs=6, snr=50.0, seed=1), 'dwi.nii.gz')"
mrconvert -quiet -force dwi.nii.gz -fslgrad dwi.bvec dwi.bval -strides -1,2,3,4 -datatype int16 dwi.mif.gz
dwi2tensor -quiet -force dwi.mif.gz dt.mif
mrconvert -quiet -force dt.mif -strides 3,2,1,4 -datatype float64be dt_strides321_f64.mif.gz
mrconvert -quiet -force dt.mif -datatype int16 -scaling 0,0.00001 dt_int16.mih
mrconvert -quiet -force dt.mif dt.nii
dwi2mask -quiet -force dwi.mif.gz mask.mif
mrconvert -quiet -force mask.mif -datatype uint8 mask.nii
mrconvert -quiet -force dwi.mif.gz -export_grad_fsl dwi_from_mif.bvec dwi_from_mif.bval dwi_from_mif.nii
rm dwi.nii.gz dwi.bvec dwi.bval
