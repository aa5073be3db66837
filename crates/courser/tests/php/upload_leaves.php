<?php
// Shared by the test workers that report what PHP sees of uploads.
declare(strict_types=1);

/** Every leaf of an upload tree (a leaf has a tmpName), with its field path. */
function upload_leaves(array $tree, string $prefix = ''): array
{
    $out = [];
    foreach ($tree as $key => $node) {
        $field = $prefix === '' ? (string)$key : "{$prefix}[{$key}]";
        if (is_array($node) && array_key_exists('tmpName', $node)) {
            $tmp = (string)$node['tmpName'];
            $exists = $tmp !== '' && is_file($tmp);
            $out[] = [
                'field' => $field,
                'name' => $node['name'],
                'size' => $node['size'],
                'error' => $node['error'],
                'tmpName' => $tmp,
                'exists' => $exists,
                'mode' => $exists ? sprintf('%o', fileperms($tmp) & 0777) : '',
                'md5' => $exists ? md5_file($tmp) : '',
            ];
        } elseif (is_array($node)) {
            array_push($out, ...upload_leaves($node, $field));
        }
    }
    return $out;
}
